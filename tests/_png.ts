/**
 * Reads a PNG into RGBA pixels, for tests that look at a screenshot: 8-bit
 * truecolour (RGB or RGBA), not interlaced, as headless Chromium writes.
 * Anything else is refused with a `SyntaxError`, never misread.
 *
 * @module
 */

/** Decoded pixels: `width * height * 4` bytes, RGBA, row by row. */
export interface Image {
  width: number;
  height: number;
  rgba: Uint8Array;
}

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

async function inflate(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as BlobPart]).stream().pipeThrough(
    new DecompressionStream("deflate"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Decodes a PNG file's bytes. */
export async function decodePng(bytes: Uint8Array): Promise<Image> {
  if (!SIGNATURE.every((byte, i) => bytes[i] === byte)) {
    throw new SyntaxError("Cannot decode the PNG as its signature is wrong");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 8;
  let header: { width: number; height: number; channels: number } | undefined;
  const data: Uint8Array[] = [];
  while (offset < bytes.length) {
    const length = view.getUint32(offset);
    const type = new TextDecoder().decode(bytes.subarray(offset + 4, offset + 8));
    const body = bytes.subarray(offset + 8, offset + 8 + length);
    offset += 12 + length;
    if (type === "IHDR") {
      const [depth, colour, , , interlace] = body.subarray(8, 13);
      if (depth !== 8 || (colour !== 2 && colour !== 6) || interlace !== 0) {
        throw new SyntaxError(
          `Cannot decode a PNG of bit depth ${depth}, colour type ${colour}, interlace ${interlace}`,
        );
      }
      header = {
        width: view.getUint32(16),
        height: view.getUint32(20),
        channels: colour === 6 ? 4 : 3,
      };
    } else if (type === "IDAT") data.push(body);
    else if (type === "IEND") break;
  }
  if (!header) throw new SyntaxError("Cannot decode the PNG as it has no IHDR chunk");
  const { width, height, channels } = header;
  const joined = new Uint8Array(data.reduce((n, d) => n + d.length, 0));
  data.reduce((at, d) => (joined.set(d, at), at + d.length), 0);
  const raw = await inflate(joined);
  const stride = width * channels;
  if (raw.length !== height * (stride + 1)) {
    throw new SyntaxError(`Cannot decode the PNG as its data has ${raw.length} bytes`);
  }
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride;
    for (let x = 0; x < stride; x++) {
      const left = x >= channels ? pixels[row + x - channels] : 0;
      const up = y > 0 ? pixels[row - stride + x] : 0;
      const upLeft = y > 0 && x >= channels ? pixels[row - stride + x - channels] : 0;
      const predictor = [0, left, up, (left + up) >> 1, paeth(left, up, upLeft)][filter];
      if (predictor === undefined) throw new SyntaxError(`Cannot decode PNG filter ${filter}`);
      pixels[row + x] = (line[x] + predictor) & 0xff;
    }
  }
  if (channels === 4) return { width, height, rgba: pixels };
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0, j = 0; i < pixels.length; i += 3, j += 4) {
    rgba.set(pixels.subarray(i, i + 3), j);
    rgba[j + 3] = 255;
  }
  return { width, height, rgba };
}

/** How many pixels have exactly the colour `#rrggbb`. */
export function countColor(image: Image, hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  let count = 0;
  for (let i = 0; i < image.rgba.length; i += 4) {
    if (image.rgba[i] === r && image.rgba[i + 1] === g && image.rgba[i + 2] === b) count++;
  }
  return count;
}
