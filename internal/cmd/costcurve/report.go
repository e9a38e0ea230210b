package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// report prints the markdown tables and writes costcurve.csv, steady.csv,
// startup.csv, throughput.png and memory.png to dir.
func report(dir, machine string, b *bench, rows []row, steadies []steady, starts []startup) {
	check(os.MkdirAll(dir, 0o755))
	f, err := os.Create(filepath.Join(dir, "tables.md"))
	check(err)
	defer f.Close()
	w := io.MultiWriter(os.Stdout, f)
	if len(rows) > 0 {
		fmt.Fprintf(w, "\n## Cost curve\n\n%s. Loopback, %d connections, %d interleaved rounds of %s, %s traffic over the N credentials.\n\n",
			machine, b.conc, b.rounds, b.round, b.dist)

		head := []string{"N", "store", "instances", "cache_size", "ratio gw/plain", "ratio quartiles", "ratio pooled", "gw req/s", "plain req/s", "gw p99", "plain p99",
			"CPU µs/req gw", "CPU µs/req plain", "heap B/cred", "RSS B/cred", "Redis B/cred", "Redis cmds/req", "Redis cmds/load",
			"miss rate", "scan miss fraction", "miss p50", "miss p99", "hit p50", "hit p99", "flow auth/s", "errors"}
		var table [][]string
		for _, r := range rows {
			table = append(table, []string{
				strconv.Itoa(r.n), r.store, strconv.Itoa(r.instances), strconv.Itoa(r.cache), num(r.ratio, 3),
				num(r.ratioQ1, 3) + "-" + num(r.ratioQ3, 3), num(r.ratioPooled, 3),
				num(r.gwRPS, 0), num(r.plainRPS, 0), dur(r.gwP99), dur(r.plainP99), num(r.gwCPU, 1), num(r.plainCPU, 1),
				num(r.heapPerCred, 0), num(r.rssPerCred, 0), num(r.redisPerCred, 0), num(r.redisPerReq, 4), num(r.redisPerLoad, 2),
				num(r.missRate, 3), num(r.missFrac, 3), dur(r.missP50), dur(r.missP99), dur(r.hitP50), dur(r.hitP99), num(r.authPerSec, 0), strconv.FormatInt(r.errors, 10),
			})
		}
		markdown(w, head, table)
		writeCSV(filepath.Join(dir, "costcurve.csv"), head, table)
	}

	if len(steadies) > 0 {
		fmt.Fprintf(w, "\n## Steady state: 3 instances over one Redis\n\n")
		head := []string{"N", "token lifetime", "window", "req/s", "credentials in use", "token req/s", "ideal (in use / lifetime)",
			"token req/s ÷ ideal", "Redis cmds/s", "Redis cmds/req", "Redis cmds per token request, by command", "errors"}
		var t [][]string
		for _, s := range steadies {
			t = append(t, []string{strconv.Itoa(s.n), s.ttl.String(), s.window.Round(time.Millisecond).String(), num(s.reqPerSec, 0),
				strconv.Itoa(s.inUse), num(s.tokenPerSec, 1), num(s.ideal, 1), num(s.tokenPerSec/s.ideal, 2), num(s.redisPerSec, 1),
				num(s.redisPerReq, 4), s.byCommand, strconv.FormatInt(s.errors, 10)})
		}
		markdown(w, head, t)
		writeCSV(filepath.Join(dir, "steady.csv"), head, t)
	}
	if len(starts) > 0 {
		fmt.Fprintf(w, "\n## Start-up over a store with stored credentials\n\n")
		head := []string{"store", "stored credentials", "storing them (flow)", "first response", "first 200 with a stored credential", "heap after", "RSS after"}
		var t [][]string
		for _, s := range starts {
			seed := "–"
			if s.seedTook > 0 {
				seed = fmt.Sprintf("%s (%.0f/s)", s.seedTook.Round(time.Millisecond), s.seedRate)
			}
			t = append(t, []string{s.store, strconv.Itoa(s.n), seed, dur(s.firstResponse), dur(s.firstServed), mib(s.heap), mib(s.rss)})
		}
		markdown(w, head, t)
		writeCSV(filepath.Join(dir, "startup.csv"), head, t)
	}
	plotCurves(dir, rows)
	fmt.Fprintf(w, "\nWritten to %s: tables.md, costcurve.csv, steady.csv, startup.csv, throughput.png, memory.png\n", dir)
}

// series groups rows by configuration, as plot lines.
func series(rows []row, value func(row) float64) (names []string, lines map[string]plotter.XYs) {
	lines = map[string]plotter.XYs{}
	for _, r := range rows {
		name := fmt.Sprintf("%s ×%d", r.store, r.instances)
		if r.cache < r.n {
			name += ", cache N/10"
		}
		v := value(r)
		if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
			continue
		}
		if _, ok := lines[name]; !ok {
			names = append(names, name)
		}
		lines[name] = append(lines[name], plotter.XY{X: float64(r.n), Y: v})
	}
	return names, lines
}

func plotCurves(dir string, rows []row) {
	save := func(file, title, ylabel string, logY bool, value func(row) float64) {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "credentials (N)"
		p.Y.Label.Text = ylabel
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		if logY {
			p.Y.Scale = plot.LogScale{}
			p.Y.Tick.Marker = oneTwoFive{}
		}
		p.Add(plotter.NewGrid())
		p.Legend.Top = true
		names, lines := series(rows, value)
		var args []any
		for _, n := range names {
			args = append(args, n, lines[n])
		}
		if len(args) == 0 {
			return
		}
		check(plotutil.AddLinePoints(p, args...))
		// Room above the data for the legend.
		if logY {
			p.Y.Max *= 4
		} else {
			p.Y.Max += (p.Y.Max - p.Y.Min) * 0.4
			one := plotter.NewFunction(func(float64) float64 { return 1 })
			one.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
			p.Add(one)
			goal := plotter.NewFunction(func(float64) float64 { return 0.97 })
			goal.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			p.Add(goal)
			p.Legend.Add("goal 0.97", goal)
			p.Y.Min = min(p.Y.Min, 0.95)
			p.Y.Max = max(p.Y.Max, 1.05)
		}
		check(p.Save(7*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, file)))
	}
	save("throughput.png", "Gateway throughput / plain reverse_proxy (median of interleaved rounds)", "ratio", false,
		func(r row) float64 { return r.ratio })
	save("memory.png", "Go heap per credential held (after GC, loaded minus empty)", "bytes per credential", true,
		func(r row) float64 { return r.heapPerCred })
}

// oneTwoFive labels a log axis at 1, 2 and 5 times powers of ten, so a
// range within one decade still has labels (plot.LogTicks labels only the
// powers of ten).
type oneTwoFive struct{}

func (oneTwoFive) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		for m := 1.0; m < 10; m++ {
			v := m * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'f', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

func markdown(w io.Writer, head []string, rows [][]string) {
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

func writeCSV(path string, head []string, rows [][]string) {
	f, err := os.Create(path)
	check(err)
	defer f.Close()
	cw := csv.NewWriter(f)
	check(cw.Write(head))
	for _, r := range rows {
		// Empty, not a dash, where nothing was measured.
		r = append([]string(nil), r...)
		for i := range r {
			if r[i] == "–" {
				r[i] = ""
			}
		}
		check(cw.Write(r))
	}
	cw.Flush()
	check(cw.Error())
}

func num(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func mib(b int64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}
