package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/matinee-dev/matinee/config"
)

const clusterUsage = `Usage: matinee cluster status [--json] [flags]

Shows the nodes of the cluster the server belongs to (GET /api/cluster):
each node's state, rooms, peers, CPU and traffic (docs/cluster.md).

Takes the flags of "matinee room" to reach the server: --server, --api-key,
--data-dir, --ca, --insecure (and MATINEE_SERVER, MATINEE_API_KEY, ...).
`

// runCluster runs "matinee cluster ...".
func runCluster(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprint(stderr, clusterUsage)
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			if len(args) == 0 {
				return errors.New("cluster: a command is required (status)")
			}
			return flag.ErrHelp
		}
		return fmt.Errorf("cluster: unknown command %q (status)", args[0])
	}
	fs := flag.NewFlagSet("matinee cluster status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, clusterUsage) }
	server := fs.String("server", "https://localhost:8443", "base URL of a Matinee node")
	apiKey := fs.String("api-key", "", "admin API key (default: read from the data dir)")
	dataDir := fs.String("data-dir", config.Default().DataDir, "the server's data directory (API key, local CA)")
	caFile := fs.String("ca", "", "PEM CA certificate to trust (default: the data dir's local CA, if any)")
	insecure := fs.Bool("insecure", false, "do not verify the server's certificate")
	asJSON := fs.Bool("json", false, "print the server's JSON answer")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cluster status: unexpected argument %q", fs.Arg(0))
	}
	if err := config.ApplyEnv(fs, envOnly("server", "api-key", "data-dir", "ca", "insecure")); err != nil {
		return err
	}
	c, err := newAPIClient(*server, *apiKey, *dataDir, *caFile, *insecure)
	if err != nil {
		return err
	}
	out, err := c.do("GET", "/api/cluster", nil)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(out)
		return err
	}
	return printCluster(stdout, out)
}

// clusterStatus is the answer of GET /api/cluster.
type clusterStatus struct {
	Clustered bool   `json:"clustered"`
	Self      string `json:"self"`
	Nodes     []struct {
		ID               string  `json:"id"`
		URL              string  `json:"url"`
		Region           string  `json:"region"`
		State            string  `json:"state"`
		Cores            int     `json:"cores"`
		CPU              float64 `json:"cpu"`
		Rooms            int     `json:"rooms"`
		Peers            int     `json:"peers"`
		PacketsPerSec    float64 `json:"packetsPerSec"`
		EgressBitsPerSec float64 `json:"egressBitsPerSec"`
		UpdatedAt        int64   `json:"updatedAt"`
	} `json:"nodes"`
}

// printCluster prints the nodes as a table, this node marked with *.
func printCluster(w io.Writer, answer []byte) error {
	var st clusterStatus
	if err := json.Unmarshal(answer, &st); err != nil {
		return fmt.Errorf("cluster status: unexpected answer: %w", err)
	}
	if !st.Clustered {
		_, err := fmt.Fprintln(w, "this server runs on its own (no --redis): not in a cluster")
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tREGION\tROOMS\tPEERS\tCPU\tPKT/S\tEGRESS\tSEEN\tURL")
	for _, n := range st.Nodes {
		id := n.ID
		if id == st.Self {
			id += " *"
		}
		seen := time.Since(time.UnixMilli(n.UpdatedAt)).Round(100 * time.Millisecond)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.0f%% of %d\t%.0f\t%s\t%s ago\t%s\n", id, n.State, dash(n.Region),
			n.Rooms, n.Peers, n.CPU*100, n.Cores, n.PacketsPerSec, bitrate(n.EgressBitsPerSec), seen, n.URL)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d node(s)\n", len(st.Nodes))
	return err
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func bitrate(bps float64) string {
	switch {
	case bps >= 1e6:
		return fmt.Sprintf("%.1f Mbit/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.0f kbit/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bps)
}
