// Command images builds the OCI images of Tether's binaries without Docker, a daemon or a registry: each static
// binary (CGO_ENABLED=0) goes on an empty base (no distribution, no shell) with user 65532, the binary as entrypoint
// and OCI labels, written as an image tarball <out>/<binary>.tar tagged <registry>/<binary>:<tag>. `make images`
// runs it; its test reads the images back (make images-test).
//
//	go run . -bin-dir DIR -out DIR -registry ghcr.io/tetherkube -tag 0.1.0 tether-node tether-webhook …
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	binDir := fs.String("bin-dir", "", "folder of the static binaries, one file per image, named like the binary")
	out := fs.String("out", "", "folder the image tarballs are written to")
	registry := fs.String("registry", "ghcr.io/tetherkube", "registry and repository prefix of the image names")
	tag := fs.String("tag", "", "tag of every image and its org.opencontainers.image.version (the chart's appVersion)")
	source := fs.String("source", "https://github.com/tetherkube/tether", "org.opencontainers.image.source")
	revision := fs.String("revision", "", "org.opencontainers.image.revision (the git commit); empty: none")
	goos := fs.String("os", runtime.GOOS, "operating system of the binaries (GOOS)")
	goarch := fs.String("arch", runtime.GOARCH, "architecture of the binaries (GOARCH)")
	epoch := fs.String("source-date-epoch", os.Getenv("SOURCE_DATE_EPOCH"), "Unix time of every timestamp in the images (reproducible builds); empty: 0")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs []error
	if *binDir == "" || *out == "" || *tag == "" {
		errs = append(errs, errors.New("-bin-dir, -out and -tag are required"))
	}
	if fs.NArg() == 0 {
		errs = append(errs, errors.New("name at least one binary"))
	}
	created := time.Unix(0, 0).UTC()
	if *epoch != "" {
		sec, err := strconv.ParseInt(*epoch, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("-source-date-epoch %q: %w", *epoch, err))
		}
		created = time.Unix(sec, 0).UTC()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, bin := range fs.Args() {
		s := Spec{Binary: bin, File: filepath.Join(*binDir, bin), Registry: *registry, Tag: *tag, Source: *source,
			Revision: *revision, OS: *goos, Arch: *goarch, Created: created}
		file := filepath.Join(*out, bin+".tar")
		if err := Write(s, file); err != nil {
			return err
		}
		ref, _ := s.Ref()
		fmt.Printf("%s → %s\n", ref, file)
	}
	return nil
}
