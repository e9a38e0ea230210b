// Package challenge parses WWW-Authenticate header fields (RFC 9110
// §11.6.1, RFC 6750 §3, RFC 9728 §5.1).
//
// Real servers send everything the grammar allows and some things it does
// not: repeated header fields, several challenges in one field, token68
// challenges (`Negotiate YII==`) before the Bearer one, case-insensitive
// scheme and parameter names, quoted strings with backslash escapes,
// whitespace around `=`, empty quoted values, and the same parameter given
// twice. The parser never fails: it returns every challenge it could read
// and skips what it could not.
package challenge

import "strings"

// Challenge is one authentication challenge.
type Challenge struct {
	// Scheme is lower-cased ("bearer", "dpop", "basic", ...).
	Scheme string
	// Token68 is set for challenges of the form `Scheme token68`.
	Token68 string
	// Params maps lower-cased parameter names to their unescaped values,
	// in order; a parameter given twice keeps both.
	Params map[string][]string
}

// Param returns the first value of name, or "".
func (c Challenge) Param(name string) string {
	if v := c.Params[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Parse parses every WWW-Authenticate field value given.
func Parse(fields []string) []Challenge {
	var out []Challenge
	for _, f := range fields {
		out = append(out, parseField(f)...)
	}
	return out
}

// parser walks one field value.
type parser struct {
	s string
	i int
}

func parseField(s string) []Challenge {
	p := &parser{s: s}
	var out []Challenge
	for {
		p.skipListSeparators()
		if p.eof() {
			return out
		}
		scheme := p.token()
		if scheme == "" {
			p.skipPastComma() // junk: resynchronise at the next element
			continue
		}
		ch := Challenge{Scheme: strings.ToLower(scheme), Params: map[string][]string{}}
		p.skipSpace()
		// After the scheme: nothing, a token68, or auth-params.
		if !p.eof() && p.peek() != ',' {
			if t68, ok := p.token68(); ok {
				ch.Token68 = t68
			} else {
				p.params(&ch)
			}
		}
		out = append(out, ch)
	}
}

// params reads `name = value` pairs separated by commas, stopping at the
// start of the next challenge (a token not followed by '=').
func (p *parser) params(ch *Challenge) {
	for {
		p.skipSpace()
		save := p.i
		name := p.token()
		if name == "" {
			p.skipPastComma()
			if p.eof() {
				return
			}
			continue
		}
		p.skipSpace()
		if p.eof() || p.peek() != '=' {
			// A bare token: the next challenge's scheme.
			p.i = save
			return
		}
		p.i++ // '='
		p.skipSpace()
		var val string
		if !p.eof() && p.peek() == '"' {
			val = p.quoted()
		} else {
			val = p.bareValue()
		}
		key := strings.ToLower(name)
		ch.Params[key] = append(ch.Params[key], val)
		p.skipSpace()
		if p.eof() {
			return
		}
		if p.peek() != ',' {
			p.skipPastComma()
			continue
		}
		// Consume the comma(s); what follows is another param or a new
		// challenge, which the loop's lookahead decides.
		p.skipListSeparators()
		if p.eof() {
			return
		}
	}
}

// token68 reads `token68 *BWS` when it is all the challenge holds
// (followed by the end or a comma), without consuming anything otherwise.
func (p *parser) token68() (string, bool) {
	if isParamStart(p.s[p.i:]) {
		return "", false
	}
	j := p.i
	for j < len(p.s) && isToken68Char(p.s[j]) {
		j++
	}
	if j == p.i {
		return "", false
	}
	for j < len(p.s) && p.s[j] == '=' {
		j++
	}
	k := j
	for k < len(p.s) && (p.s[k] == ' ' || p.s[k] == '\t') {
		k++
	}
	if k < len(p.s) && p.s[k] != ',' {
		return "", false
	}
	t := p.s[p.i:j]
	p.i = k
	return t, true
}

// isParamStart reports whether s begins with `token BWS "="` followed by
// a value (so it is an auth-param, not a token68 ending in padding).
func isParamStart(s string) bool {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	if i >= len(s) || s[i] != '=' {
		return false
	}
	i++
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	// `abc=` then end/comma is token68 padding; `abc=value` is a param.
	return i < len(s) && s[i] != ',' && s[i] != '='
}

func (p *parser) quoted() string {
	p.i++ // opening quote
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch c {
		case '\\':
			if p.i+1 < len(p.s) {
				b.WriteByte(p.s[p.i+1])
				p.i += 2
				continue
			}
			p.i++
		case '"':
			p.i++
			return b.String()
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return b.String() // unterminated: keep what was there
}

// bareValue reads an unquoted value. The grammar says token, but servers
// send unquoted values with ':' or '/' (`scope=files:write`), so anything
// up to a comma or whitespace is taken.
func (p *parser) bareValue() string {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ',' && p.s[p.i] != ' ' && p.s[p.i] != '\t' && p.s[p.i] != '"' {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *parser) token() string {
	start := p.i
	for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *parser) eof() bool  { return p.i >= len(p.s) }
func (p *parser) peek() byte { return p.s[p.i] }

func (p *parser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *parser) skipListSeparators() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == ',') {
		p.i++
	}
}

// skipPastComma skips junk up to and including the next comma outside a
// quoted string.
func (p *parser) skipPastComma() {
	inQuote := false
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case inQuote && c == '\\':
			if p.i < len(p.s) {
				p.i++ // the escaped character
			}
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			return
		}
	}
}

// isTokenChar reports RFC 9110 tchar.
func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken68Char(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("-._~+/", c) >= 0
}
