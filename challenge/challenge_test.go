package challenge

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		fields []string
		want   []Challenge
	}{
		{"simple bearer", []string{`Bearer realm="api"`},
			[]Challenge{{Scheme: "bearer", Params: map[string][]string{"realm": {"api"}}}}},
		{"bare scheme", []string{`Bearer`},
			[]Challenge{{Scheme: "bearer", Params: map[string][]string{}}}},
		{"case and spaces around =", []string{`BEARER Error = "invalid_token" ,  Scope=read`},
			[]Challenge{{Scheme: "bearer", Params: map[string][]string{"error": {"invalid_token"}, "scope": {"read"}}}}},
		{"escapes", []string{`Bearer error_description="say \"hi\" \\ ok"`},
			[]Challenge{{Scheme: "bearer", Params: map[string][]string{"error_description": {`say "hi" \ ok`}}}}},
		{"empty realm", []string{`Bearer realm=""`},
			[]Challenge{{Scheme: "bearer", Params: map[string][]string{"realm": {""}}}}},
		{"token68 first then bearer", []string{`Negotiate YII==, Bearer resource_metadata="https://r/.well-known/oauth-protected-resource"`},
			[]Challenge{
				{Scheme: "negotiate", Token68: "YII==", Params: map[string][]string{}},
				{Scheme: "bearer", Params: map[string][]string{"resource_metadata": {"https://r/.well-known/oauth-protected-resource"}}},
			}},
		{"two challenges one field", []string{`Basic realm="x", Bearer error="insufficient_scope", scope="a b"`},
			[]Challenge{
				{Scheme: "basic", Params: map[string][]string{"realm": {"x"}}},
				{Scheme: "bearer", Params: map[string][]string{"error": {"insufficient_scope"}, "scope": {"a b"}}},
			}},
		{"repeated fields", []string{`Basic realm="x"`, `DPoP algs="ES256", error="use_dpop_nonce"`},
			[]Challenge{
				{Scheme: "basic", Params: map[string][]string{"realm": {"x"}}},
				{Scheme: "dpop", Params: map[string][]string{"algs": {"ES256"}, "error": {"use_dpop_nonce"}}},
			}},
		{"parameter twice", []string{`Bearer resource_metadata="https://a/x", resource_metadata="https://b/y"`},
			[]Challenge{{Scheme: "bearer", Params: map[string][]string{"resource_metadata": {"https://a/x", "https://b/y"}}}}},
		{"unquoted scope", []string{`Bearer error=insufficient_scope, scope=files:write`},
			[]Challenge{{Scheme: "bearer", Params: map[string][]string{"error": {"insufficient_scope"}, "scope": {"files:write"}}}}},
		{"junk is skipped", []string{`@@@, Bearer realm="ok"`},
			[]Challenge{{Scheme: "bearer", Params: map[string][]string{"realm": {"ok"}}}}},
		{"empty", []string{``, ` , `}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Parse(tt.fields)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%q)\n got  %+v\n want %+v", tt.fields, got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`Bearer realm="a"`, `Negotiate YII==, Bearer error="x"`, `Bearer a="\"`, `,,=,"`, `DPoP error=use_dpop_nonce`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range Parse([]string{s}) {
			if c.Scheme == "" {
				t.Fatalf("empty scheme from %q", s)
			}
			for k := range c.Params {
				if k == "" {
					t.Fatalf("empty param name from %q", s)
				}
			}
		}
	})
}
