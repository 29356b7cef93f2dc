# Independent generator/checker for vakt's DC-09 vectors (Python + cryptography), so the
# Rust codec is tested against values it did not compute itself.
import binascii, datetime, re
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

def crc16_arc(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc

def aes(key, data, enc=True):
    c = Cipher(algorithms.AES(key), modes.CBC(bytes(16)))
    o = c.encryptor() if enc else c.decryptor()
    return o.update(data) + o.finalize()

def frame(body: bytes, crc_fmt='hex', lower=False, len_dec=False) -> bytes:
    crc = crc16_arc(body)
    ln = ('%04d' % len(body)) if len_dec else ('%04X' % len(body))
    if crc_fmt == 'binary':
        return b'\n' + crc.to_bytes(2, 'big') + ln.encode() + body + b'\r'
    c = '%04X' % crc
    if lower: c, ln = c.lower(), ln.lower()
    return b'\n' + c.encode() + ln.encode() + body + b'\r'

def ts(s):  # "HH:MM:SS,MM-DD-YYYY" -> RFC3339
    m = re.fullmatch(r'(\d\d):(\d\d):(\d\d),(\d\d)-(\d\d)-(\d{4})', s)
    h, mi, se, mo, d, y = m.groups()
    return f'{y}-{mo}-{d}T{h}:{mi}:{se}Z'

def dc09_ts(rfc):
    d = datetime.datetime.strptime(rfc, '%Y-%m-%dT%H:%M:%SZ')
    return d.strftime('_%H:%M:%S,%m-%d-%Y').encode()

def enc_body(key, pad_byte, rest, pipe=True, lower=False):
    r = (b'|' if pipe else b'') + rest
    n = 16 - len(r) % 16
    plain = bytes([pad_byte]) * n + r
    h = aes(key, plain).hex()
    return (h if lower else h.upper()).encode(), plain

def esc(b: bytes) -> str:
    out = []
    for i, c in enumerate(b):
        if c == 0x0A: out.append('\\n')
        elif c == 0x0D: out.append('\\r')
        elif c == 0x5C: out.append('\\\\')
        elif c == 0x20 and i == len(b) - 1: out.append('\\x20')
        elif 0x20 <= c <= 0x7E: out.append(chr(c))
        else: out.append('\\x%02X' % c)
    return ''.join(out)

def header(tok, seq, r, l, acct):
    h = b'"' + tok + b'"' + seq
    if r is not None: h += b'R' + r
    if l is not None: h += b'L' + l
    h += (b'#' + acct) if acct is not None else b'A0'
    return h

def reply(tok, seq, r, l, acct, fmt='hex'):
    return frame(header(tok, seq, r, l, acct) + b'[]', fmt)

def enc_reply(key, tok, seq, r, l, acct, now, pad, pipe=True):
    h, _ = enc_body(key, pad, b']' + dc09_ts(now), pipe)
    return frame(header(b'*' + tok, seq, r, l, acct) + b'[' + h)

RECS = []
def rec(**kw): RECS.append(kw)

def split(fr: bytes):
    """Header fields of a frame the generator built or copied, for the expected values."""
    i = fr.index(b'"')
    body = fr[i:-1]
    m = re.match(rb'"(\*?)([A-Z0-9-]+)"(\d{4})(?:R([0-9A-Fa-f]{1,6}))?(?:L([0-9A-Fa-f]{1,6}))?(?:#([0-9A-Fa-f]{1,16})|A0)\[', body)
    return dict(encrypted=m.group(1) == b'*', id=m.group(2), seq=m.group(3), receiver=m.group(4), line=m.group(5), account=m.group(6))

def emit():
    lines = []
    for r in RECS:
        fr = r['frame']
        lines.append(f"name: {r['name']}")
        lines.append(f"source: {r['source']}")
        lines.append(f"frame: {esc(fr)}")
        lines.append(f"parse: {r.get('parse', 'ok')}")
        if r.get('parse', 'ok') == 'ok':
            h = split(fr)
            tok = h['id'].decode()
            tokname = {'NULL': 'Null', 'ADM-CID': 'AdmCid', 'SIA-DCS': 'SiaDcs', 'ACK': 'Ack', 'NAK': 'Nak', 'DUH': 'Duh', 'RSP': 'Rsp'}.get(tok, 'Other')
            lines.append(f"token: {tokname}")
            lines.append(f"id: {tok}")
            lines.append(f"seq: {h['seq'].decode()}")
            for k in ('receiver', 'line', 'account'):
                v = h[k]
                lines.append(f"{k}: {v.decode() if v is not None else '-'}")
            lines.append(f"encrypted: {'yes' if h['encrypted'] else 'no'}")
            if r.get('crc_format'): lines.append(f"crc_format: {r['crc_format']}")
            if r.get('length_decimal'): lines.append("length_decimal: yes")
            if 'key' in r: lines.append(f"key: {r['key']}")
            if 'plaintext' in r: lines.append(f"plaintext: {esc(r['plaintext'])}")
            if 'content' in r or 'data' in r:
                lines.append(f"content: {r.get('content', 'ok')}")
            if 'data' in r:
                lines.append(f"data: {esc(r['data'])}")
                for x in r.get('xdata', []):
                    lines.append(f"xdata: {esc(x)}")
                lines.append(f"timestamp: {r.get('timestamp', '-')}")
            if 'payload' in r:
                lines.append(f"payload: {r['payload']}")
                if r['payload'] == 'ok':
                    lines.append(f"payload_account: {r.get('payload_account', '-')}")
                    for e in r.get('events', []):
                        lines.append(f"event: {e}")
            for k in ('ack', 'duh'):
                if k in r: lines.append(f"{k}: {esc(r[k])}")
            if 'nak_now' in r:
                lines.append(f"nak_now: {r['nak_now']}")
                lines.append(f"nak: {esc(r['nak'])}")
            if 'ack_now' in r:
                lines.append(f"ack_now: {r['ack_now']}")
                lines.append(f"ack_pad: {chr(r['ack_pad'])}")
                if r.get('ack_pipe') is False: lines.append("ack_pipe: no")
                lines.append(f"ack_encrypted: {esc(r['ack_encrypted'])}")
            if 'reencode' in r:
                lines.append(f"reencode: {r['reencode']}")
        lines.append('')
    return '\n'.join(lines)
