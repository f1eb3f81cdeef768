package layers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// picture is the README's picture of the imports, top layer first. A
// package may import one of a lower layer, or one of its own layer under
// the same top directory (recorder/hls → recorder/mpegts); nothing else.
// "x/..." names x and the packages under it, "x/*" those under it only.
var picture = [][]string{
	{"cmd/...", "bench/...", "e2e/...", "server/servertest"},
	{"server"},
	{"signaling", "whip", "rest", "metrics", "ingest", "relay"},
	{"room", "recorder"},
	{"sfu"},
	{"sfu/*", "recorder/*", "ingest/*", "config", "certs", "lanaddr", "qr", "turnserver", "web", "cluster"},
	{"codecs/..."},
	{"internal/*"},
}

// sfuImporters may import sfu itself: room (the way in for everything
// above it), the recorder (a consumer of room.Media's producers through
// sfu's direct transports) and server, which only starts the Worker (the
// UDP port) and hands it to room. The identifiers server may use are
// serverSFU.
var sfuImporters = map[string]bool{"room": true, "recorder": true, "server": true}

var serverSFU = map[string]bool{"NewWorker": true, "WorkerConfig": true, "Worker": true}

// renderPicture is the picture as the README shows it.
func renderPicture() string {
	var b strings.Builder
	for i, layer := range picture {
		if i > 0 {
			b.WriteString("  ↓\n")
		}
		b.WriteString(strings.Join(layer, "  ") + "\n")
	}
	return b.String()
}

// pkg is what go list says of one package.
type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
}

// layerOf returns the layer (0: top) and top directory of a package path
// relative to the module, or -1 when the picture does not place it.
func layerOf(rel string) (int, string) {
	top, _, _ := strings.Cut(rel, "/")
	for i, layer := range picture {
		for _, p := range layer {
			if base, ok := strings.CutSuffix(p, "/*"); ok {
				if strings.HasPrefix(rel, base+"/") {
					return i, top
				}
			} else if base, ok := strings.CutSuffix(p, "/..."); ok {
				if rel == base || strings.HasPrefix(rel, base+"/") {
					return i, top
				}
			} else if rel == p {
				return i, top
			}
		}
	}
	return -1, top
}

// checkImports returns every import of the module's packages that the
// picture forbids, and every package it does not place.
func checkImports(mod string, pkgs []pkg) []string {
	var bad []string
	for _, p := range pkgs {
		rel, ok := strings.CutPrefix(p.ImportPath, mod+"/")
		if !ok {
			continue
		}
		li, top := layerOf(rel)
		if li < 0 {
			bad = append(bad, fmt.Sprintf("%s is not in the README's picture (internal/layers.picture)", rel))
			continue
		}
		for _, imp := range p.Imports {
			irel, ok := strings.CutPrefix(imp, mod+"/")
			if !ok {
				continue
			}
			lj, itop := layerOf(irel)
			switch {
			case lj < 0:
				// Reported as a package of its own.
			case lj < li:
				bad = append(bad, fmt.Sprintf("%s imports %s, which the picture puts above it", rel, irel))
			case lj == li && itop != top:
				bad = append(bad, fmt.Sprintf("%s imports %s, which the picture puts beside it", rel, irel))
			case irel == "sfu" && !sfuImporters[rel]:
				bad = append(bad, fmt.Sprintf("%s imports sfu: only room (and the recorder, and server for the Worker) may; go through room", rel))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// sfuIdents returns the sfu identifiers a Go source file uses.
func sfuIdents(mod, name string, src []byte) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", name, err)
	}
	local := ""
	for _, is := range f.Imports {
		if path, _ := strconv.Unquote(is.Path.Value); path == mod+"/sfu" {
			local = "sfu"
			if is.Name != nil {
				local = is.Name.Name
			}
		}
	}
	if local == "" {
		return nil, nil
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		if se, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := se.X.(*ast.Ident); ok && id.Name == local {
				out = append(out, se.Sel.Name)
			}
		}
		return true
	})
	return out, nil
}

// goList lists the module's packages (their own imports, tests left out:
// a test may reach wherever it must to observe).
func goList(t *testing.T) (string, []pkg) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Dir,GoFiles,Imports,Module", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	var mod string
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct {
			pkg
			Module struct{ Path string }
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		mod = p.Module.Path
		pkgs = append(pkgs, p.pkg)
	}
	if len(pkgs) < 20 || mod == "" {
		t.Fatalf("go list found %d packages of module %q: too few to be the whole module", len(pkgs), mod)
	}
	return mod, pkgs
}

// TestLayers fails when a package imports one that the README's picture
// puts above or beside it, or reaches into sfu other than through room.
func TestLayers(t *testing.T) {
	mod, pkgs := goList(t)
	for _, b := range checkImports(mod, pkgs) {
		t.Error(b)
	}
	for _, p := range pkgs {
		if p.ImportPath != mod+"/server" {
			continue
		}
		for _, name := range p.GoFiles {
			src, err := os.ReadFile(filepath.Join(p.Dir, name))
			if err != nil {
				t.Fatal(err)
			}
			ids, err := sfuIdents(mod, name, src)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if !serverSFU[id] {
					t.Errorf("server/%s uses sfu.%s: server only starts the Worker; go through room", name, id)
				}
			}
		}
	}
}

// TestREADMEPicture keeps the README's picture the one TestLayers checks.
func TestREADMEPicture(t *testing.T) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	readme, err := os.ReadFile(filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := "```text\n" + renderPicture() + "```\n"
	if !bytes.Contains(readme, []byte(want)) {
		t.Errorf("README.md does not draw the picture internal/layers checks; it should contain:\n%s", want)
	}
}

// TestCheckerCatches feeds the checker imports the picture forbids: a
// checker that passes everything would make TestLayers worthless.
func TestCheckerCatches(t *testing.T) {
	const mod = "example.com/m"
	p := func(path string, imports ...string) pkg {
		for i, imp := range imports {
			imports[i] = mod + "/" + imp
		}
		return pkg{ImportPath: mod + "/" + path, Imports: imports}
	}
	cases := []struct {
		pkg  pkg
		want string // "" when allowed
	}{
		{p("signaling", "room"), ""},
		{p("rest", "room", "recorder"), ""},
		{p("rest", "sfu"), "rest imports sfu: only room"},
		{p("room", "rest"), "room imports rest, which the picture puts above it"},
		{p("rest", "signaling"), "rest imports signaling, which the picture puts beside it"},
		{p("room", "sfu", "internal/atomicfile"), ""},
		{p("recorder", "sfu", "recorder/hls"), ""},
		{p("recorder/hls", "recorder/mpegts", "codecs/h264"), ""},
		{p("sfu", "sfu/bwe", "codecs", "codecs/vp8"), ""},
		{p("codecs", "codecs/h264"), ""},
		{p("codecs/h264", "sfu/rtpmunge"), "codecs/h264 imports sfu/rtpmunge, which the picture puts above it"},
		{p("sfu", "sfu/bwe"), ""},
		{p("sfu", "sfu/nackgen", "sfu/packetcache", "sfu/rtpmunge"), ""},
		{p("sfu/packetcache", "sfu"), "sfu/packetcache imports sfu, which the picture puts above it"},
		{p("server", "sfu", "whip", "recorder"), ""},
		{p("signaling", "sfu"), "signaling imports sfu: only room"},
		{p("whip", "room", "sfu"), "whip imports sfu: only room"},
		{p("metrics", "sfu"), "metrics imports sfu: only room"},
		{p("sfu", "room"), "sfu imports room, which the picture puts above it"},
		{p("room", "signaling"), "room imports signaling, which the picture puts above it"},
		{p("room", "recorder"), "room imports recorder, which the picture puts beside it"},
		{p("recorder", "room"), "recorder imports room, which the picture puts beside it"},
		{p("whip", "signaling"), "whip imports signaling, which the picture puts beside it"},
		{p("certs", "sfu/bwe"), "certs imports sfu/bwe, which the picture puts beside it"},
		{p("newpkg"), "newpkg is not in the README's picture"},
		{p("e2e", "server", "web"), ""},
		{p("cmd/matinee", "server", "ingest/play"), ""},
		{p("ingest", "room", "ingest/play", "recorder/rtmp"), ""},
		{p("ingest", "rest"), "ingest imports rest, which the picture puts beside it"},
		{p("ingest", "sfu"), "ingest imports sfu: only room"},
		{p("internal/testpeer", "room"), "internal/testpeer imports room, which the picture puts above it"},
		{p("server/servertest", "server", "config", "internal/testenv"), ""},
		{p("internal/testenv", "server/servertest"), "internal/testenv imports server/servertest, which the picture puts above it"},
	}
	for _, c := range cases {
		got := checkImports(mod, []pkg{c.pkg})
		switch {
		case c.want == "" && len(got) > 0:
			t.Errorf("%s: allowed imports reported: %v", c.pkg.ImportPath, got)
		case c.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], c.want)):
			t.Errorf("%s: got %v, want one report starting %q", c.pkg.ImportPath, got, c.want)
		}
	}

	src := []byte("package server\nimport x \"" + mod + "/sfu\"\nfunc f() { _, _ = x.NewWorker(nil, x.WorkerConfig{}); _ = x.KindVideo }\n")
	ids, err := sfuIdents(mod, "s.go", src)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != "NewWorker,WorkerConfig,KindVideo" {
		t.Errorf("sfu identifiers of a renamed import: %v", ids)
	}
}
