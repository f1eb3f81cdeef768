package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/matinee-dev/matinee/config"
)

const roomUsage = `Usage: matinee room <command> [flags]

Calls a running server's REST API (docs/api.md) and prints its JSON answer.

  matinee room create --name NAME [--id ID] [--max-peers N] [--password P] [--locked] [--metadata JSON]
                      [--open-control] [--wait-for-everyone=false] [--guests-can-share=false]
                      [--simulcast=false] [--public-hls]
  matinee room list
  matinee room get ID
  matinee room delete ID
  matinee room token ID [--identity I] [--name N] [--role host|guest|viewer] [--ttl 24h]
  matinee room hls-url ID [--ttl 24h]      a signed URL of the room's live HLS
  matinee room ingest ID [--json]           make an RTMP stream key (OBS, ffmpeg; docs/rtmp.md)
  matinee room ingest ID --revoke KEYID     revoke a stream key (a publisher live on it is cut off)

Every command takes --server (default https://localhost:8443), --api-key (default: the key in
the data dir), --data-dir, --ca (a CA certificate to trust; default: the data dir's local CA)
and --insecure; these also read MATINEE_SERVER, MATINEE_API_KEY, MATINEE_DATA_DIR,
MATINEE_CA and MATINEE_INSECURE.
`

// apiClient calls the server's REST API.
type apiClient struct {
	base string
	key  string
	http *http.Client
}

// runRoom runs "matinee room ...".
func runRoom(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, roomUsage)
		if len(args) == 0 {
			return errors.New("room: a command is required (create, list, get, delete, token, hls-url, ingest)")
		}
		return flag.ErrHelp
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("matinee room "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, roomUsage) }
	server := fs.String("server", "https://localhost:8443", "base URL of the Matinee server")
	apiKey := fs.String("api-key", "", "admin API key (default: read from the data dir)")
	dataDir := fs.String("data-dir", config.Default().DataDir, "the server's data directory (API key, local CA)")
	caFile := fs.String("ca", "", "PEM CA certificate to trust (default: the data dir's local CA, if any)")
	insecure := fs.Bool("insecure", false, "do not verify the server's certificate")

	var body map[string]any
	set := func(name string, v any) {
		if body == nil {
			body = map[string]any{}
		}
		body[name] = v
	}
	var (
		name, id, password, metadata, identity, role         string
		maxPeers                                             int
		locked, openControl, waitAll, guestsShare, simulcast bool
		publicHLS, asJSON                                    bool
		ttl                                                  time.Duration
		revoke                                               string
	)
	switch cmd {
	case "create":
		fs.StringVar(&name, "name", "", "room name (required)")
		fs.StringVar(&id, "id", "", "ask for this id (default: derived from the name)")
		fs.IntVar(&maxPeers, "max-peers", 0, "peers allowed in the room (default: the server's)")
		fs.StringVar(&password, "password", "", "password for people who join by link")
		fs.BoolVar(&locked, "locked", false, "nobody new may join")
		fs.StringVar(&metadata, "metadata", "", "a JSON object stored with the room")
		fs.BoolVar(&openControl, "open-control", false, "guests may control playback too")
		fs.BoolVar(&waitAll, "wait-for-everyone", true, "pause the room while anyone buffers")
		fs.BoolVar(&guestsShare, "guests-can-share", true, "guests may share their screen")
		fs.BoolVar(&simulcast, "simulcast", true, "publishers send each video in several sizes (false: one full-quality encoding)")
		fs.BoolVar(&publicHLS, "public-hls", false, "anyone who knows the room id may watch its live HLS, without a token or a signed URL")
	case "token":
		fs.StringVar(&identity, "identity", "", "participant identity (default: a fresh one)")
		fs.StringVar(&name, "name", "", "display name")
		fs.StringVar(&role, "role", "", "host, guest or viewer (default guest)")
		fs.DurationVar(&ttl, "ttl", 0, "how long the token is valid (default 24h)")
	case "hls-url":
		fs.DurationVar(&ttl, "ttl", 0, "how long the URL is valid (default 24h)")
	case "ingest":
		fs.StringVar(&revoke, "revoke", "", "revoke this stream key id (sk_…) instead of making one")
		fs.BoolVar(&asJSON, "json", false, "print the server's JSON answer instead of the OBS settings")
	case "list", "get", "delete":
	default:
		fmt.Fprint(stderr, roomUsage)
		return fmt.Errorf("room: unknown command %q (create, list, get, delete, token, hls-url, ingest)", cmd)
	}
	// The room id may come before or after the flags.
	var pos []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		pos, args = args[:1], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	pos = append(pos, fs.Args()...)
	// Only the connection settings come from the environment: a stray
	// MATINEE_NAME must not name a room.
	if err := config.ApplyEnv(fs, envOnly("server", "api-key", "data-dir", "ca", "insecure")); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	needID := cmd == "get" || cmd == "delete" || cmd == "token" || cmd == "hls-url" || cmd == "ingest"
	switch {
	case needID && len(pos) != 1:
		return fmt.Errorf("room %s: give exactly one room id", cmd)
	case !needID && len(pos) != 0:
		return fmt.Errorf("room %s: unexpected argument %q", cmd, pos[0])
	}

	c, err := newAPIClient(*server, *apiKey, *dataDir, *caFile, *insecure)
	if err != nil {
		return err
	}
	var method, path string
	switch cmd {
	case "create":
		if name == "" {
			return errors.New("room create: --name is required")
		}
		method, path = "POST", "/api/rooms"
		set("name", name)
		if id != "" {
			set("id", id)
		}
		if given["max-peers"] {
			set("maxPeers", maxPeers)
		}
		if password != "" {
			set("password", password)
		}
		if given["locked"] {
			set("locked", locked)
		}
		if metadata != "" {
			if !json.Valid([]byte(metadata)) {
				return errors.New("room create: --metadata is not valid JSON")
			}
			set("metadata", json.RawMessage(metadata))
		}
		if given["open-control"] {
			set("openControl", openControl)
		}
		if given["wait-for-everyone"] {
			set("waitForEveryone", waitAll)
		}
		if given["guests-can-share"] {
			set("guestsCanShare", guestsShare)
		}
		if given["simulcast"] {
			set("simulcast", simulcast)
		}
		if given["public-hls"] {
			set("publicHLS", publicHLS)
		}
	case "list":
		method, path = "GET", "/api/rooms"
	case "get":
		method, path = "GET", "/api/rooms/"+url.PathEscape(pos[0])
	case "delete":
		method, path = "DELETE", "/api/rooms/"+url.PathEscape(pos[0])
	case "token":
		method, path = "POST", "/api/rooms/"+url.PathEscape(pos[0])+"/tokens"
		if identity != "" {
			set("identity", identity)
		}
		if name != "" {
			set("name", name)
		}
		if role != "" {
			set("role", role)
		}
		if ttl != 0 {
			set("ttl", int64(ttl/time.Second))
		}
	case "hls-url":
		method, path = "POST", "/api/rooms/"+url.PathEscape(pos[0])+"/hls-url"
		if ttl != 0 {
			set("ttl", int64(ttl/time.Second))
		}
	case "ingest":
		if revoke != "" {
			if !strings.HasPrefix(revoke, "sk_") {
				return fmt.Errorf("room ingest --revoke %q: want a stream key id (sk_…), as printed when the key was made", revoke)
			}
			method, path = "DELETE", "/api/rooms/"+url.PathEscape(pos[0])+"/ingests/"+url.PathEscape(revoke)
		} else {
			method, path = "POST", "/api/rooms/"+url.PathEscape(pos[0])+"/ingests"
			set("type", "rtmp")
		}
	}
	out, err := c.do(method, path, body)
	if err != nil {
		return err
	}
	switch {
	case cmd == "delete":
		out = []byte(fmt.Sprintf(`{"deleted":%q}`, pos[0]))
	case cmd == "ingest" && revoke != "":
		out = []byte(fmt.Sprintf(`{"revoked":%q,"room":%q}`, revoke, pos[0]))
	case cmd == "ingest" && !asJSON:
		return printStreamKey(stdout, out)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out, "", "  "); err != nil {
		pretty.Reset()
		pretty.Write(out)
	}
	pretty.WriteByte('\n')
	_, err = stdout.Write(pretty.Bytes())
	return err
}

func newAPIClient(server, key, dataDir, caFile string, insecure bool) (*apiClient, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want an http(s):// URL", server)
	}
	if key == "" {
		b, err := os.ReadFile(filepath.Join(dataDir, "api-key"))
		if err != nil {
			return nil, fmt.Errorf("no API key: give --api-key or MATINEE_API_KEY (reading %s: %w)", filepath.Join(dataDir, "api-key"), err)
		}
		key = strings.TrimSpace(string(b))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: insecure} //nolint:gosec // --insecure asks for it
	if !insecure {
		if caFile == "" {
			if p := filepath.Join(dataDir, "ca", "rootCA.pem"); fileExists(p) {
				caFile = p
			}
		}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, fmt.Errorf("--ca: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ca %s: no PEM certificate in it", caFile)
			}
			tr.TLSClientConfig.RootCAs = pool
		}
	}
	return &apiClient{base: strings.TrimRight(server, "/"), key: key, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// envOnly looks up MATINEE_* variables for the named flags only.
func envOnly(flags ...string) func(string) (string, bool) {
	allowed := map[string]bool{}
	for _, f := range flags {
		allowed[config.EnvName(f)] = true
	}
	return func(k string) (string, bool) {
		if !allowed[k] {
			return "", false
		}
		return os.LookupEnv(k)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// do sends one request and returns the body of a 2xx answer; an API error
// comes back as an error carrying its code and message.
func (c *apiClient) do(method, path string, body any) ([]byte, error) {
	defer c.http.CloseIdleConnections()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(out, &e) == nil && e.Error.Code != "" {
			return nil, fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, e.Error.Code, e.Error.Message)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return out, nil
}

// printStreamKey prints a new stream key as the fields to type into OBS:
// the key is shown this once (the server keeps only its hash).
func printStreamKey(w io.Writer, answer []byte) error {
	var k struct {
		ID        string `json:"id"`
		Room      string `json:"room"`
		URL       string `json:"url"`
		StreamKey string `json:"streamKey"`
	}
	if err := json.Unmarshal(answer, &k); err != nil || k.URL == "" || k.StreamKey == "" {
		return fmt.Errorf("room ingest: unexpected answer %q", answer)
	}
	_, err := fmt.Fprintf(w, `RTMP stream key %s for room %s (shown once; revoke with: matinee room ingest %s --revoke %s)

  Server:      %s
  Stream Key:  %s

  ffmpeg:      ffmpeg -re -i FILE -c:v libx264 -bf 0 -g 60 -c:a aac -f flv %s/%s

OBS: Settings → Stream: Service "Custom…", Server and Stream Key as above.
     Settings → Output (Advanced) → Streaming:
       Encoder            x264 or a hardware H.264 encoder (not HEVC or AV1)
       Rate Control       CBR
       Keyframe Interval  2 s
       B-frames           0 (x264: bframes=0 in x264 Options, or Profile baseline)
     Audio: AAC (OBS's default).
`, k.ID, k.Room, k.Room, k.ID, k.URL, k.StreamKey, k.URL, k.StreamKey)
	return err
}
