// Command bench measures Tether's pod path against the plain Kubernetes pipeline on the same machine in the same
// run (`make bench`; see docs/benchmarks.md): a burst of pods through the virtual nodes against the same burst
// straight into one member (W1), memory and idle CPU of tether-node with 10,000 pods (W2), and a crash and
// restart of tether-node under those pods (W3). It prints a table and writes a JSON file under -out.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	o := defaultOptions()
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	o.addFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
