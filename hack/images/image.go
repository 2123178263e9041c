package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The user every image runs as: distroless' "nonroot", which runAsNonRoot accepts (a numeric, non-zero user).
const (
	UID     = 65532
	User    = "65532:65532"
	BinDir  = "/usr/local/bin"
	HomeDir = "/home/nonroot"
)

// OCI annotation keys the images carry as labels.
const (
	LabelTitle    = "org.opencontainers.image.title"
	LabelVersion  = "org.opencontainers.image.version"
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
	LabelDesc     = "org.opencontainers.image.description"
)

// Spec is one image: a static binary on an empty base.
type Spec struct {
	Binary   string // name of the binary and of the image: <Registry>/<Binary>:<Tag>
	File     string // path of the static binary to put in the image
	Registry string // e.g. ghcr.io/tetherkube
	Tag      string // e.g. 0.1.0 (the chart's appVersion)
	Source   string // org.opencontainers.image.source
	Revision string // org.opencontainers.image.revision; empty: no label
	OS, Arch string // platform of the binary
	Created  time.Time
}

// Ref is the image's name: <Registry>/<Binary>:<Tag>.
func (s Spec) Ref() (name.Tag, error) {
	return name.NewTag(s.Registry+"/"+s.Binary+":"+s.Tag, name.StrictValidation)
}

// Build makes the image: one layer (the binary under /usr/local/bin, /etc/passwd and /etc/group naming user 65532,
// its home and a /tmp) on nothing, the binary as entrypoint, user 65532, OCI labels. The same inputs give the same
// image: every timestamp is s.Created.
func Build(s Spec) (v1.Image, error) {
	bin, err := os.ReadFile(s.File)
	if err != nil {
		return nil, err
	}
	layerTar, err := rootfs(s.Binary, bin, s.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: s.Created},
			CreatedBy: "hack/images: " + s.Binary + " (static) on an empty base",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = s.OS, s.Arch
	cf.Created = v1.Time{Time: s.Created}
	labels := map[string]string{
		LabelTitle:   s.Binary,
		LabelVersion: s.Tag,
		LabelSource:  s.Source,
		LabelDesc:    "Tether's " + s.Binary + ", a static binary on an empty base",
	}
	if s.Revision != "" {
		labels[LabelRevision] = s.Revision
	}
	cf.Config = v1.Config{
		Entrypoint: []string{path.Join(BinDir, s.Binary)},
		User:       User,
		WorkingDir: HomeDir,
		Env:        []string{"PATH=" + BinDir + ":/usr/bin:/bin", "HOME=" + HomeDir},
		Labels:     labels,
	}
	return mutate.ConfigFile(img, cf)
}

// Write builds s and writes it to file as an image tarball (`docker load`, `podman load`, `skopeo copy
// docker-archive:…`, `crane push`), tagged s.Ref().
func Write(s Spec, file string) error {
	ref, err := s.Ref()
	if err != nil {
		return fmt.Errorf("%s: %w", s.Binary, err)
	}
	img, err := Build(s)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Binary, err)
	}
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", s.Binary, err)
	}
	return os.Rename(tmp, file)
}

// rootfs is the tar of the image's only layer.
func rootfs(binary string, bin []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, uid int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0) },
		func() error {
			return file("etc/passwd", 0o644, fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:%s:/sbin/nologin\n", UID, UID, HomeDir))
		},
		func() error { return file("etc/group", 0o644, fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", UID)) },
		func() error { return dir("home", 0o755, 0) },
		func() error { return dir(HomeDir[1:], 0o700, UID) },
		func() error { return dir("tmp", 0o1777, 0) },
		func() error { return dir("usr", 0o755, 0) },
		func() error { return dir("usr/local", 0o755, 0) },
		func() error { return dir(BinDir[1:], 0o755, 0) },
		func() error { return file(path.Join(BinDir[1:], binary), 0o755, bin) },
		tw.Close,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}
