package certs

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
)

// MobileConfigType is the media type iOS needs to offer installing a
// configuration profile instead of showing it as text.
const MobileConfigType = "application/x-apple-aspen-config"

// MobileConfig wraps the CA certificate in caPEM in an iOS configuration
// profile that installs it as a trusted root. name is what iOS shows for
// the profile; empty means the CA's common name.
//
// The identifiers and UUIDs derive from the certificate, so downloading
// the profile twice replaces the installed one rather than adding a
// second. After installing, iOS still requires turning on full trust in
// Settings > General > About > Certificate Trust Settings, which the page
// serving the profile should say.
func MobileConfig(caPEM []byte, name string) ([]byte, error) {
	cert, err := parseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: mobileconfig: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("certs: mobileconfig: not a CA certificate")
	}
	if name == "" {
		name = cert.Subject.CommonName
	}
	if name == "" {
		name = "Matinee local CA"
	}
	sum := sha256.Sum256(cert.Raw)
	id := "dev.matinee.ca." + hex.EncodeToString(sum[:8])

	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>PayloadContent</key>
	<array>
		<dict>
`)
	plistEntries(&b, "\t\t\t", []plistEntry{
		{"PayloadCertificateFileName", "string", "matinee-ca.cer"},
		{"PayloadContent", "data", base64.StdEncoding.EncodeToString(cert.Raw)},
		{"PayloadDescription", "string", "Adds a CA root certificate"},
		{"PayloadDisplayName", "string", name},
		{"PayloadIdentifier", "string", id + ".root"},
		{"PayloadType", "string", "com.apple.security.root"},
		{"PayloadUUID", "string", derivedUUID(sum, "root")},
		{"PayloadVersion", "integer", "1"},
	})
	b.WriteString("\t\t</dict>\n\t</array>\n")
	plistEntries(&b, "\t", []plistEntry{
		{"PayloadDescription", "string", "Trust the HTTPS certificate of Matinee on this network"},
		{"PayloadDisplayName", "string", name},
		{"PayloadIdentifier", "string", id},
		{"PayloadOrganization", "string", "Matinee"},
		{"PayloadRemovalDisallowed", "false", ""},
		{"PayloadType", "string", "Configuration"},
		{"PayloadUUID", "string", derivedUUID(sum, "profile")},
		{"PayloadVersion", "integer", "1"},
	})
	b.WriteString("</dict>\n</plist>\n")
	return b.Bytes(), nil
}

// plistEntry is one key of a plist dict with a value of the given
// element type; "true" and "false" take no text.
type plistEntry struct {
	key, typ, text string
}

func plistEntries(b *bytes.Buffer, indent string, entries []plistEntry) {
	for _, e := range entries {
		b.WriteString(indent + "<key>" + e.key + "</key>\n" + indent)
		if e.typ == "true" || e.typ == "false" {
			b.WriteString("<" + e.typ + "/>\n")
			continue
		}
		b.WriteString("<" + e.typ + ">")
		xml.EscapeText(b, []byte(e.text))
		b.WriteString("</" + e.typ + ">\n")
	}
}

// derivedUUID makes a UUID (version 8, RFC 9562) from the certificate
// hash and a label, stable across runs and distinct per payload.
func derivedUUID(certSum [32]byte, label string) string {
	h := sha256.New()
	h.Write(certSum[:])
	h.Write([]byte(label))
	u := h.Sum(nil)[:16]
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
