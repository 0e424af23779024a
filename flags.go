package main

import (
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/meshcert/meshcert-exporter/sources"
)

// proxyFlags are the command-line overrides of one proxy source's settings. A flag the user did
// not give leaves the configuration file's value.
type proxyFlags struct {
	kind        sources.ProxyKind
	enabled     bool
	transport   string
	adminPort   int
	interval    time.Duration
	timeout     time.Duration
	concurrency int
	set         map[string]*bool
}

// addProxyFlags adds --source.<source> and --<flag>.{transport,admin-port,interval,timeout,concurrency}
// for a proxy kind.
func addProxyFlags(app *kingpin.Application, kind sources.ProxyKind) *proxyFlags {
	f := &proxyFlags{kind: kind, set: map[string]*bool{}}
	source, prefix, what := kind.Source, kind.Flag, kind.What
	flag := func(name, help string) *kingpin.FlagClause {
		f.set[name] = new(bool)
		return app.Flag(name, help).IsSetByUser(f.set[name])
	}
	flag("source."+source, "Read the certificates of "+what+" (needs list and watch on pods).").BoolVar(&f.enabled)
	flag(prefix+".transport", "How to reach "+what+": port-forward (through the API server) or direct (HTTP to the pod IP).").
		EnumVar(&f.transport, sources.TransportPortForward, sources.TransportDirect)
	flag(prefix+".admin-port", "Admin port of "+what+".").IntVar(&f.adminPort)
	flag(prefix+".interval", "Interval between two reads of one of "+what+".").DurationVar(&f.interval)
	flag(prefix+".timeout", "Timeout of one read of "+what+".").DurationVar(&f.timeout)
	flag(prefix+".concurrency", "How many of "+what+" are read at once.").IntVar(&f.concurrency)
	return f
}

// apply writes the flags the user gave over p.
func (f *proxyFlags) apply(p *sources.ProxyConfig) {
	source, prefix := f.kind.Source, f.kind.Flag
	if *f.set["source."+source] {
		p.Enabled = f.enabled
	}
	if *f.set[prefix+".transport"] {
		p.Transport = f.transport
	}
	if *f.set[prefix+".admin-port"] {
		p.AdminPort = f.adminPort
	}
	if *f.set[prefix+".interval"] {
		p.Interval = f.interval
	}
	if *f.set[prefix+".timeout"] {
		p.Timeout = f.timeout
	}
	if *f.set[prefix+".concurrency"] {
		p.Concurrency = f.concurrency
	}
}
