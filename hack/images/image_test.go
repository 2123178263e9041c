package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestBuild builds an image of a fake binary and reads it back from its tarball.
func TestBuild(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tether-demo")
	if err := os.WriteFile(bin, []byte("not really a binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := Spec{Binary: "tether-demo", File: bin, Registry: "example.com/tether", Tag: "1.2.3", Source: "https://example.com/src",
		Revision: "abc123", OS: "linux", Arch: "arm64", Created: time.Unix(1700000000, 0).UTC()}
	file := filepath.Join(dir, "tether-demo.tar")
	if err := Write(s, file); err != nil {
		t.Fatal(err)
	}
	img, files := readImage(t, file, "example.com/tether/tether-demo:1.2.3")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	want := v1.Config{
		Entrypoint: []string{"/usr/local/bin/tether-demo"},
		User:       "65532:65532",
		WorkingDir: "/home/nonroot",
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/home/nonroot"},
		Labels: map[string]string{
			LabelTitle: "tether-demo", LabelVersion: "1.2.3", LabelSource: "https://example.com/src", LabelRevision: "abc123",
			LabelDesc: "Tether's tether-demo, a static binary on an empty base",
		},
	}
	if diff := cmp.Diff(want, cf.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" || !cf.Created.Equal(s.Created) {
		t.Errorf("platform %s/%s created %s, want linux/arm64 %s", cf.OS, cf.Architecture, cf.Created, s.Created)
	}
	if got := string(files["usr/local/bin/tether-demo"].data); got != "not really a binary" {
		t.Errorf("binary in the image: %q", got)
	}
	if diff := cmp.Diff([]string{"etc/", "etc/group", "etc/passwd", "home/", "home/nonroot/", "tmp/", "usr/", "usr/local/", "usr/local/bin/",
		"usr/local/bin/tether-demo"}, slices.Sorted(maps.Keys(files))); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(files["etc/passwd"].data), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd has no user 65532:\n%s", files["etc/passwd"].data)
	}
	if h := files["home/nonroot/"].hdr; h.Uid != UID {
		t.Errorf("home owned by %d, want %d", h.Uid, UID)
	}
	if h := files["tmp/"].hdr; h.Mode&0o7777 != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", h.Mode&0o7777)
	}
	for n, f := range files {
		if !f.hdr.ModTime.Equal(s.Created) {
			t.Errorf("%s: mtime %s, want %s", n, f.hdr.ModTime, s.Created)
		}
	}

	// Same inputs, same image.
	again := filepath.Join(dir, "again.tar")
	if err := Write(s, again); err != nil {
		t.Fatal(err)
	}
	img2, _ := readImage(t, again, "example.com/tether/tether-demo:1.2.3")
	d1, _ := img.Digest()
	d2, _ := img2.Digest()
	if d1 != d2 {
		t.Errorf("two builds of the same inputs differ: %s, %s", d1, d2)
	}
}

// TestRunReportsEveryProblem checks the command's flag validation.
func TestRunReportsEveryProblem(t *testing.T) {
	err := run([]string{"-source-date-epoch", "soon"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"-bin-dir, -out and -tag are required", "name at least one binary", `-source-date-epoch "soon"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestMadeImages reads the images `make images` wrote (TETHER_IMAGES_DIR, default <repo>/bin/images): one per
// binary of TETHER_IMAGES (default: Tether's binaries, tether-scheduler once scheduler/cmd/tether-scheduler exists),
// named as the chart's defaults name them (ghcr.io/tetherkube/<binary>:<appVersion of charts/tether>), with a static
// binary as entrypoint, user 65532 and the OCI labels.
func TestMadeImages(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("TETHER_IMAGES_DIR")
	if dir == "" {
		dir = filepath.Join(root, "bin", "images")
	}
	binaries := strings.Fields(os.Getenv("TETHER_IMAGES"))
	if len(binaries) == 0 {
		binaries = []string{"tether-node", "tether-webhook", "tether-descheduler", "tetherctl"}
		if _, err := os.Stat(filepath.Join(root, "scheduler", "cmd", "tether-scheduler")); err == nil {
			binaries = append(binaries, "tether-scheduler")
		}
	}
	chart, err := os.ReadFile(filepath.Join(root, "charts", "tether", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^appVersion:\s*"?([^"\s]+)"?\s*$`).FindSubmatch(chart)
	if m == nil {
		t.Fatal("charts/tether/Chart.yaml has no appVersion")
	}
	version := string(m[1])
	for _, bin := range binaries {
		t.Run(bin, func(t *testing.T) {
			file := filepath.Join(dir, bin+".tar")
			if _, err := os.Stat(file); err != nil {
				t.Fatalf("%v: run `make images` first", err)
			}
			img, files := readImage(t, file, "ghcr.io/tetherkube/"+bin+":"+version)
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			entry := path.Join(BinDir, bin)
			if diff := cmp.Diff([]string{entry}, cf.Config.Entrypoint); diff != "" {
				t.Errorf("entrypoint (-want +got):\n%s", diff)
			}
			if cf.Config.User != "65532:65532" {
				t.Errorf("user %q, want 65532:65532", cf.Config.User)
			}
			for k, want := range map[string]string{LabelTitle: bin, LabelVersion: version, LabelSource: "https://github.com/tetherkube/tether"} {
				if got := cf.Config.Labels[k]; got != want {
					t.Errorf("label %s = %q, want %q", k, got, want)
				}
			}
			if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
				t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
			}
			f, ok := files[entry[1:]]
			if !ok {
				t.Fatalf("no %s in the image", entry)
			}
			if f.hdr.Mode&0o111 == 0 {
				t.Errorf("%s is not executable: %o", entry, f.hdr.Mode)
			}
			exe, err := elf.NewFile(bytes.NewReader(f.data))
			if err != nil {
				t.Fatalf("%s: %v", entry, err)
			}
			for _, p := range exe.Progs {
				if p.Type == elf.PT_INTERP {
					t.Errorf("%s is dynamically linked (it has an interpreter): build it with CGO_ENABLED=0", entry)
				}
			}
		})
	}
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

// readImage loads the image tagged ref from an image tarball (it fails when the tarball has no such tag) and the
// files of its layers.
func readImage(t *testing.T, file, ref string) (v1.Image, map[string]entry) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatalf("%s: image %s: %v", file, ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]entry{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = entry{h, data}
		}
		rc.Close()
	}
	return img, files
}
