#!/usr/bin/env python3
"""Makes phrase-sv.wav, the person the demo's alarm units play, from espeak-ng's output.

    espeak-ng -v sv -s 150 -w /tmp/phrase-22k.wav \
        "Hej, jag har ramlat och kommer inte upp. Kan ni skicka någon?"
    python3 make_phrase.py /tmp/phrase-22k.wav phrase-sv.wav

Reads a mono 16-bit WAV at any rate, trims the silence around the speech (keeping 100 ms
each side), low-passes it at 3.4 kHz and resamples it to 8 kHz (a windowed sinc, Blackman,
24 zero crossings each side), scales the peak to -6 dBFS and writes it as an 8 kHz mono
16-bit PCM WAV (the unit encodes it in the call's G.711 law). Python's standard library
only.
"""

import math
import struct
import sys
import wave

OUT_RATE = 8000
CUTOFF_HZ = 3400.0
ZEROS = 24
PEAK = 0.5  # -6 dBFS
SILENCE = 0.02  # of full scale: below this is silence at the ends
KEEP_SECS = 0.1


def read(path):
    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            sys.exit(f"{path}: mono 16-bit PCM expected")
        rate = w.getframerate()
        raw = w.readframes(w.getnframes())
    n = len(raw) // 2
    return rate, [s / 32768.0 for s in struct.unpack(f"<{n}h", raw)]


def trim(x, rate):
    loud = [i for i, s in enumerate(x) if abs(s) > SILENCE]
    if not loud:
        sys.exit("no speech in the input")
    keep = int(KEEP_SECS * rate)
    return x[max(0, loud[0] - keep) : loud[-1] + keep + 1]


def resample(x, rate):
    """Band-limited resampling: each output sample is the input convolved with a windowed
    sinc at cutoff CUTOFF_HZ, evaluated at the output instant."""
    fc = CUTOFF_HZ / rate  # cycles per input sample
    half = int(math.ceil(ZEROS / (2.0 * fc)))
    out = []
    n_out = int(len(x) * OUT_RATE / rate)
    for k in range(n_out):
        t = k * rate / OUT_RATE
        centre = int(math.floor(t))
        acc = 0.0
        for i in range(centre - half + 1, centre + half + 1):
            if 0 <= i < len(x):
                d = t - i
                sinc = 2 * fc if d == 0 else math.sin(2 * math.pi * fc * d) / (math.pi * d)
                u = (d + half) / (2 * half)  # 0..1 across the window
                win = 0.42 - 0.5 * math.cos(2 * math.pi * u) + 0.08 * math.cos(4 * math.pi * u)
                acc += x[i] * sinc * win
        out.append(acc)
    return out


def write_wav(path, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(OUT_RATE)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rate, x = read(sys.argv[1])
    y = resample(trim(x, rate), rate)
    peak = max(abs(s) for s in y) or 1.0
    samples = [int(round(s * PEAK / peak * 32767)) for s in y]
    write_wav(sys.argv[2], samples)
    print(f"{len(samples)} samples, {len(samples) / OUT_RATE:.2f} s at {OUT_RATE} Hz")


if __name__ == "__main__":
    main()
