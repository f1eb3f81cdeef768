package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/matinee-dev/matinee/certs"
	"github.com/matinee-dev/matinee/config"
	"github.com/matinee-dev/matinee/lanaddr"
)

// runCert prints where the CA is and what the certificate covers, adding
// hosts first when --host is given.
func runCert(args []string, stdout, stderr io.Writer) error {
	cfg := config.Default()
	fs := flag.NewFlagSet("matinee cert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config.BindFlags(fs, &cfg)
	var hosts []string
	fs.Func("host", "also cover this host name or IP address (repeatable)", func(v string) error {
		hosts = append(hosts, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := config.ApplyEnv(fs, nil); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cm, err := certs.New(ctx, certs.Config{
		DataDir:  cfg.DataDir,
		CertFile: cfg.CertFile,
		KeyFile:  cfg.KeyFile,
		CAROOT:   cfg.CADir,
		Addrs: func() []netip.Addr {
			a, _ := lanaddr.Usable(lanaddr.Options{Interfaces: cfg.ICEInterfaces})
			return a
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	defer cm.Close()
	if len(hosts) > 0 {
		if err := cm.AddHosts(hosts...); err != nil {
			return err
		}
	}
	info := cm.Info()
	fmt.Fprintf(stdout, "CA:          %s (%s)\n", info.CAPath, info.CASource)
	fmt.Fprintf(stdout, "Certificate: %s\n", info.CertPath)
	fmt.Fprintf(stdout, "Valid until: %s\n", info.NotAfter.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(stdout, "Names:       %s\n", strings.Join(info.DNSNames, ", "))
	ips := make([]string, 0, len(info.IPs))
	for _, ip := range info.IPs {
		ips = append(ips, ip.String())
	}
	fmt.Fprintf(stdout, "Addresses:   %s\n", strings.Join(ips, ", "))
	return nil
}
