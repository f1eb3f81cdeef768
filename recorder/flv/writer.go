package flv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/matinee-dev/matinee/recorder/amf0"
)

// File is an FLV file being recorded. Every tag goes to the file with one
// write, so a process killed at any moment leaves a file that ends on a
// tag boundary, and a write the disk could only take part of is cut off
// again; Close patches the duration and size into the metadata.
type File struct {
	f        *os.File
	buf      []byte
	size     int64
	durAt    int64 // file offset of the metadata's duration value
	sizeAt   int64 // and of its filesize value
	lastTime uint32
}

// Create creates path and writes the header and a metadata tag.
func Create(path string, video, audio bool, meta amf0.ECMAArray) (*File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	// duration and filesize come first, with placeholders, so that Close
	// can find and patch them.
	props := append(amf0.ECMAArray{{Key: "duration", Value: 0.0}, {Key: "filesize", Value: 0.0}}, meta...)
	body, err := Metadata(props)
	if err != nil {
		f.Close()
		return nil, err
	}
	w := &File{f: f}
	b := AppendHeader(nil, video, audio)
	tagStart := int64(len(b)) + 11
	b = AppendTag(b, Tag{Type: TagScript, Data: body})
	if i := bytes.Index(body, []byte("\x00\x08duration\x00")); i >= 0 {
		w.durAt = tagStart + int64(i) + 11
	}
	if i := bytes.Index(body, []byte("\x00\x08filesize\x00")); i >= 0 {
		w.sizeAt = tagStart + int64(i) + 11
	}
	if err := w.write(b); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

func (w *File) write(b []byte) error {
	n, err := w.f.Write(b)
	w.size += int64(n)
	return err
}

// WriteTag appends one tag. A write that fails part way (a full disk)
// is undone: the file is cut back to the end of the last whole tag, so it
// still plays to the end.
func (w *File) WriteTag(t Tag) error {
	w.buf = AppendTag(w.buf[:0], t)
	end := w.size
	if err := w.write(w.buf); err != nil {
		return w.cutTo(end, err)
	}
	if t.Timestamp > w.lastTime {
		w.lastTime = t.Timestamp
	}
	return nil
}

// cutTo truncates the file to size after a failed write (err) and puts
// the write offset back there.
func (w *File) cutTo(size int64, err error) error {
	if w.size == size {
		return err
	}
	if terr := w.f.Truncate(size); terr != nil {
		return errors.Join(err, fmt.Errorf("flv: cut the partial tag at %d: %w", size, terr))
	}
	if _, serr := w.f.Seek(size, io.SeekStart); serr != nil {
		return errors.Join(err, fmt.Errorf("flv: seek to %d: %w", size, serr))
	}
	w.size = size
	return err
}

// Size returns the bytes written so far.
func (w *File) Size() int64 { return w.size }

// Close patches duration and file size into the metadata, syncs and
// closes the file.
func (w *File) Close() error {
	var d [8]byte
	if w.durAt > 0 {
		binary.BigEndian.PutUint64(d[:], math.Float64bits(float64(w.lastTime)/1000))
		_, _ = w.f.WriteAt(d[:], w.durAt)
	}
	if w.sizeAt > 0 {
		binary.BigEndian.PutUint64(d[:], math.Float64bits(float64(w.size)))
		_, _ = w.f.WriteAt(d[:], w.sizeAt)
	}
	serr := w.f.Sync()
	if err := w.f.Close(); err != nil {
		return err
	}
	return serr
}
