// Package ntp converts between wall-clock time and the 64-bit NTP
// timestamps of RTCP sender reports (RFC 3550 4): seconds since 1900 in
// the high 32 bits, the fraction of a second in the low ones. The SFU
// writes and reads them, the recorder and the ingest too; one conversion
// keeps their clocks agreeing to the nanosecond.
package ntp

import "time"

// unixOffset is the number of seconds from 1900 (NTP) to 1970 (Unix).
const unixOffset = 2208988800

// From returns t as an NTP timestamp.
func From(t time.Time) uint64 {
	return (uint64(t.Unix())+unixOffset)<<32 | uint64(t.Nanosecond())<<32/uint64(time.Second)
}

// Time returns the wall-clock time of an NTP timestamp.
func Time(ts uint64) time.Time {
	return time.Unix(int64(ts>>32)-unixOffset, int64((ts&0xffffffff)*uint64(time.Second)>>32))
}
