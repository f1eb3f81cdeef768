// Package fulldisk gives tests a real full disk: a small tmpfs mounted on
// a temporary directory, and a filler file that takes its free space.
// Mounting needs root: without it the test skips, except in CI
// (CI=true), where it fails.
package fulldisk

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Mount mounts a tmpfs of size bytes on a fresh temporary directory and
// unmounts it when the test ends.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("a full-disk test needs root to mount a tmpfs, and CI must run it")
		}
		t.Skip("mounting a tmpfs for a full disk needs root")
	}
	dir, err := os.MkdirTemp("", "fulldisk-*")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		os.Remove(dir)
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		// MNT_DETACH: a file a failed test left open must not keep the
		// mount (and the test's memory) around.
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
		os.Remove(dir)
	})
	return dir
}

// Filler is a file that takes a file system's free space.
type Filler struct {
	path string
}

// Fill writes a file in dir until the file system is full (ENOSPC), down
// to the last page: afterwards no new byte fits anywhere on it.
func Fill(t testing.TB, dir string) *Filler {
	t.Helper()
	path := filepath.Join(dir, ".filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("filler: %v", err)
	}
	defer f.Close()
	for _, chunk := range []int{256 << 10, 4 << 10, 512, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filler: %v", err)
				}
				break
			}
		}
	}
	return &Filler{path: path}
}

// Free deletes the filler, giving its space back.
func (f *Filler) Free(t testing.TB) {
	t.Helper()
	if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("free filler: %v", err)
	}
}
