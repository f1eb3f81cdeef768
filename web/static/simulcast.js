// How a video is cut into simulcast layers (docs/simulcast.md): from a
// ladder of layers and the size of what is captured, the sendEncodings of
// one producer.

// A layer narrower than this is left out: a picture that small is mush
// even in a thumbnail.
export const MIN_LAYER_WIDTH = 160;

// How many simulcast layers Chrome sends of a picture this size (its
// kSimulcastFormats table). Given more encodings, it leaves out the
// *largest*: a 640×360 camera with q, h and f sends q and h only, and
// nobody ever gets the full picture. So a small capture is offered fewer
// layers, which keeps the top one at full size.
export function maxLayers(width, height) {
  const px = width * height;
  return px >= 960 * 540 ? 3 : px >= 480 * 270 ? 2 : 1;
}

// Layer ladders, smallest first: how much each layer scales the capture
// down, and its bitrate and frame rate caps.
export const CAMERA_LAYERS = [
  {scale: 4, maxBitrate: 100_000, maxFramerate: 15},
  {scale: 2, maxBitrate: 300_000, maxFramerate: 24},
  {scale: 1, maxBitrate: 900_000, maxFramerate: 24},
];

export function screenLayers(fullBitrate) {
  return [
    {scale: 4, maxBitrate: 250_000, maxFramerate: 15},
    {scale: 2, maxBitrate: 900_000, maxFramerate: 30},
    {scale: 1, maxBitrate: fullBitrate, maxFramerate: 30},
  ];
}

/**
 * The encodings to send a video of width × height pixels with.
 *
 * Without simulcast, or when only one layer fits, this is one encoding
 * without a rid, at full size and the top layer's rates. Else the largest
 * layers that fit (at most maxLayers, each at least MIN_LAYER_WIDTH wide)
 * get rids: the SFU orders layers by rid (q < h < f), so two layers are
 * q and f, three q, h and f; the smallest sent is always q and the full
 * size always f, which is what a thumbnail and a big tile ask for. An
 * unknown size (0) keeps the whole ladder.
 */
export function videoEncodings({width = 0, height = 0} = {}, ladder, {simulcast = true} = {}) {
  const top = ladder[ladder.length - 1];
  const single = [{maxBitrate: top.maxBitrate, maxFramerate: top.maxFramerate}];
  if (!simulcast) return single;
  const known = width > 0 && height > 0;
  let fit = ladder.filter((l) => !known || width / l.scale >= MIN_LAYER_WIDTH);
  fit = fit.slice(-Math.min(3, known ? maxLayers(width, height) : 3));
  if (fit.length < 2) return single;
  const rids = fit.length === 2 ? ['q', 'f'] : ['q', 'h', 'f'];
  return fit.map((l, i) => ({
    rid: rids[i],
    scaleResolutionDownBy: l.scale,
    maxBitrate: l.maxBitrate,
    maxFramerate: l.maxFramerate,
  }));
}
