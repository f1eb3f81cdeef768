#!/usr/bin/env python3
"""A WHIP publisher and a WHEP viewer around GStreamer's webrtcbin.

Matinee's interop tests (internal/interop) run it as a client this project
did not write. It keeps ICE on 127.0.0.1 (no STUN server, libnice told to
gather on loopback only) and uses webrtcbin as its users do, with
bundle-policy=max-bundle.

  gstwebrtc.py publish URL --token T [--video h264|vp8|vp9|none] [--audio]
  gstwebrtc.py watch URL [--token T]

It reports on stdout, one event per line, for the test to wait on:

  offer <path>            the offer it sent (every candidate in it)
  answer <path>           the answer it applied
  ice <state>             webrtcbin's ICE connection state changed
  pad <kind> <codec>      (watch) a decoded stream started
  frames video|audio N    (watch) decoded video frames / audio buffers so far
  error <text>            something failed; the script exits 1

It runs until SIGTERM or SIGINT, then ends its session with DELETE.
"""

import argparse
import os
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

VIDEO = {
    "h264": (
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
        "! videoconvert ! x264enc tune=zerolatency bframes=0 key-int-max=30 speed-preset=ultrafast "
        "! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 aggregate-mode=zero-latency "
        "! application/x-rtp,media=video,encoding-name=H264,payload=102 ! w."
    ),
    "vp8": (
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
        "! videoconvert ! vp8enc deadline=1 keyframe-max-dist=30 ! rtpvp8pay "
        "! application/x-rtp,media=video,encoding-name=VP8,payload=96 ! w."
    ),
    "vp9": (
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
        "! videoconvert ! vp9enc deadline=1 cpu-used=8 keyframe-max-dist=30 ! rtpvp9pay "
        "! application/x-rtp,media=video,encoding-name=VP9,payload=98 ! w."
    ),
}
AUDIO = (
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc "
    "! rtpopuspay ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! w."
)
# What the viewer offers to receive.
RECV_VIDEO = (
    "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,"
    "packetization-mode=(string)1,profile-level-id=(string)42e01f,rtcp-fb-nack-pli=(boolean)true;"
    "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000,rtcp-fb-nack-pli=(boolean)true;"
    "application/x-rtp,media=video,encoding-name=VP9,payload=98,clock-rate=90000,rtcp-fb-nack-pli=(boolean)true"
)
RECV_AUDIO = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2"


def say(*words):
    print(*words, flush=True)


class Session:
    def __init__(self, args, pipeline):
        self.args = args
        self.loop = GLib.MainLoop()
        self.pipe = Gst.parse_launch(pipeline)
        if not isinstance(self.pipe, Gst.Pipeline):
            # A description of one element parses to that element alone.
            w, self.pipe = self.pipe, Gst.Pipeline.new()
            self.pipe.add(w)
        self.w = self.pipe.get_by_name("w")
        self.location = None
        self.offered = False
        self.counts = {"video": 0, "audio": 0}
        self.failed = False
        self.loopback_only()
        self.w.connect("on-negotiation-needed", lambda _: None)
        self.w.connect("notify::ice-connection-state", self.on_ice_state)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    def loopback_only(self):
        # libnice gathers on every interface unless given addresses; the
        # tests keep all media on loopback.
        # webrtcbin leaves its ICE object floating, so Python's wrapper
        # owns it: keep the wrappers for as long as the pipeline lives.
        self.ice = self.w.get_property("ice-agent")
        self.ice.set_property("ice-tcp", False)
        self.nice = self.ice.get_property("agent")
        addr = Nice.Address.new()
        if not addr.set_from_string("127.0.0.1"):
            self.fail("cannot parse 127.0.0.1")
        self.nice.add_local_address(addr)

    def fail(self, text):
        say("error", " ".join(str(text).split()))
        self.failed = True
        self.loop.quit()

    def on_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        self.fail(f"{msg.src.get_name()}: {err.message} ({dbg})")

    def on_ice_state(self, w, _pspec):
        state = w.get_property("ice-connection-state")
        say("ice", state.value_nick)

    def run(self):
        self.pipe.set_state(Gst.State.PLAYING)
        GLib.timeout_add(50, self.offer_when_ready)
        for sig in (signal.SIGTERM, signal.SIGINT):
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, self.loop.quit)
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        self.delete()
        return 1 if self.failed else 0

    def ready(self):
        # The offer waits for the payloaders' caps, so it carries their
        # fmtp (profile-level-id, packetization-mode), as a publisher
        # that starts its sources first does.
        for pad in self.w.sinkpads:
            if pad.get_current_caps() is None:
                return False
        return True

    def offer_when_ready(self):
        if self.offered:
            return False
        if not self.ready():
            return True
        self.offered = True
        self.w.emit("create-offer", None, Gst.Promise.new_with_change_func(self.on_offer))
        return False

    def on_offer(self, promise):
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        if offer is None:
            GLib.idle_add(self.fail, "create-offer gave no offer")
            return
        self.w.connect("notify::ice-gathering-state", self.on_gathering)
        self.w.emit("set-local-description", offer, None)

    def on_gathering(self, w, _pspec):
        if w.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.post_offer)

    def post_offer(self):
        if self.location is not None:
            return False
        sdp = self.w.get_property("local-description").sdp.as_text()
        self.write("offer", sdp)
        req = urllib.request.Request(self.args.url, data=sdp.encode(), method="POST")
        req.add_header("Content-Type", "application/sdp")
        if self.args.token:
            req.add_header("Authorization", "Bearer " + self.args.token)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                self.location = urllib.parse.urljoin(self.args.url, resp.headers["Location"])
                answer = resp.read().decode()
        except urllib.error.HTTPError as e:
            self.fail(f"POST {self.args.url}: {e.code} {e.read().decode(errors='replace')}")
            return False
        except OSError as e:
            self.fail(f"POST {self.args.url}: {e}")
            return False
        self.write("answer", answer)
        ok, msg = GstSdp.SDPMessage.new_from_text(answer)
        if ok != GstSdp.SDPResult.OK:
            self.fail("cannot parse the answer")
            return False
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self.w.emit("set-remote-description", desc, None)
        return False

    def write(self, what, sdp):
        path = os.path.join(self.args.dir, what + ".sdp")
        with open(path, "w") as f:
            f.write(sdp)
        say(what, path)

    def delete(self):
        if self.location is None:
            return
        try:
            urllib.request.urlopen(urllib.request.Request(self.location, method="DELETE"), timeout=5).close()
        except OSError:
            pass  # the server may be gone already


class Viewer(Session):
    def __init__(self, args):
        super().__init__(args, "webrtcbin name=w bundle-policy=max-bundle")
        recv = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
        for caps in (RECV_VIDEO, RECV_AUDIO):
            self.w.emit("add-transceiver", recv, Gst.Caps.from_string(caps))
        self.w.connect("pad-added", self.on_pad)

    def ready(self):
        return True

    def on_pad(self, _w, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        dec = Gst.ElementFactory.make("decodebin")
        dec.connect("pad-added", self.on_decoded)
        self.pipe.add(dec)
        dec.sync_state_with_parent()
        pad.link(dec.get_static_pad("sink"))

    def on_decoded(self, dec, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name()
        kind = "video" if name.startswith("video/") else "audio" if name.startswith("audio/") else None
        if kind is None:
            return
        q = Gst.ElementFactory.make("queue")
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        sink.set_property("signal-handoffs", True)
        sink.connect("handoff", self.on_buffer, kind)
        for e in (q, sink):
            self.pipe.add(e)
            e.sync_state_with_parent()
        q.link(sink)
        pad.link(q.get_static_pad("sink"))
        say("pad", kind, name)

    def on_buffer(self, _sink, _buf, _pad, kind):
        n = self.counts[kind] + 1
        self.counts[kind] = n
        if n <= 3 or n % 10 == 0:
            say("frames", kind, n)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["publish", "watch"])
    p.add_argument("url")
    p.add_argument("--token", default="")
    p.add_argument("--video", choices=["h264", "vp8", "vp9", "none"], default="h264")
    p.add_argument("--audio", action="store_true")
    p.add_argument("--dir", default=".", help="where offer.sdp and answer.sdp are written")
    args = p.parse_args()
    Gst.init(None)
    if args.mode == "watch":
        s = Viewer(args)
    else:
        parts = ["webrtcbin name=w bundle-policy=max-bundle"]
        if args.video != "none":
            parts.append(VIDEO[args.video])
        if args.audio:
            parts.append(AUDIO)
        if len(parts) == 1:
            p.error("publish needs --video or --audio")
        s = Session(args, " ".join(parts))
    sys.exit(s.run())


if __name__ == "__main__":
    main()
