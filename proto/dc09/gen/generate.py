import sys
import os
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen import *  # noqa: F403 (helpers: crc16_arc, aes, frame, rec, ...)

K_A16 = b'A' * 16
K128 = bytes.fromhex('000102030405060708090A0B0C0D0E0F')
K_S09 = bytes.fromhex('850cba22f7dd4f033405da83e4c5bae9')
K192 = bytes.fromhex('00112233445566778899AABBCCDDEEFF0123456789ABCDEF')
K256 = bytes.fromhex('603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4')

def check(fr: bytes):
    # CRC and hex length must be right, unless the record says otherwise.
    i = fr.index(b'"')
    body = fr[i:-1]
    return crc16_arc(body), len(body)

# ---- protocols.md §1.10, real-world / implementation frames ----
f1 = b'\n7449003F"ADM-CID"0078R1L0#AAAA[#00AAAA|3407 01 001]_01:59:16,09-21-2023\r'
assert check(f1) == (0x7449, 0x3F)
rec(name='s1_10_1_pima_cid407', source='protocols.md §1.10 #1 (PIMA, pysiaalarm PR #55)', frame=f1,
    data=b'#00AAAA|3407 01 001', timestamp=ts('01:59:16,09-21-2023'),
    payload='ok', payload_account='00AAAA',
    events=['code=CID\\x20407 q=restore zone=- group=1 user=1 time=- text=-'],
    ack=b'\n1CA50014"ACK"0078R1L0#AAAA[]\r', reencode='yes')
assert reply(b'ACK', b'0078', b'1', b'0', b'AAAA') == b'\n1CA50014"ACK"0078R1L0#AAAA[]\r'

f2 = b'\n9B2F0041"ADM-CID"1285R1L0#AAAAAA[#AAAAAA|3408 01 000]_13:26:16,10-04-2023\r'
rec(name='s1_10_2_pima_cid408', source='protocols.md §1.10 #2', frame=f2,
    data=b'#AAAAAA|3408 01 000', timestamp=ts('13:26:16,10-04-2023'),
    payload='ok', payload_account='AAAAAA',
    events=['code=CID\\x20408 q=restore zone=- group=1 user=- time=- text=-'],
    ack=b'\nB6D50016"ACK"1285R1L0#AAAAAA[]\r', reencode='yes')
assert reply(b'ACK', b'1285', b'1', b'0', b'AAAAAA') == b'\nB6D50016"ACK"1285R1L0#AAAAAA[]\r'

f3 = b'\n8C860043"SIA-DCS"9876R579BDFL789ABC#123456A[#123456A|NFA129][M1234567890AB]\r'
rec(name='s1_10_3_s09_sia_fa', source='protocols.md §1.10 #3 (S09 docstring)', frame=f3,
    data=b'#123456A|NFA129', xdata=[b'M1234567890AB'], payload='ok', payload_account='123456A',
    events=['code=SIA\\x20FA q=new zone=129 group=- user=- time=- text=-'],
    ack=b'\n40230021"ACK"9876R579BDFL789ABC#123456A[]\r', reencode='yes')
assert reply(b'ACK', b'9876', b'579BDF', b'789ABC', b'123456A') == b'\n40230021"ACK"9876R579BDFL789ABC#123456A[]\r'

f4 = b'\nF4D20029"SIA-DCS"0001RF3L77#1234[#1234|NRR|Atest]\r'
rec(name='s1_10_4_rs_sia_rr', source='protocols.md §1.10 #4 (RS message.tests.rs)', frame=f4,
    data=b'#1234|NRR|Atest', payload='ok', payload_account='1234',
    events=['code=SIA\\x20RR q=new zone=- group=- user=- time=- text=test'],
    ack=b'\n61DB0016"ACK"0001RF3L77#1234[]\r', reencode='yes')
assert reply(b'ACK', b'0001', b'F3', b'77', b'1234') == b'\n61DB0016"ACK"0001RF3L77#1234[]\r'

f5 = b'\nE4410025"NAK"0000R0L0A0[]_16:20:01,09-24-2025\r'
assert check(f5) == (0xE441, 0x25)
rec(name='s1_10_5_rs_nak', source='protocols.md §1.10 #5 (RS test)', frame=f5,
    data=b'', timestamp=ts('16:20:01,09-24-2025'), payload='unsupported_token',
    nak_now=ts('16:20:01,09-24-2025'), nak=f5)

f6 = b'\n76D80055"*NULL"0000R0L0#AAAB[B4BC8B40D0E6D959D6BEA78E88CC0B2155741A3C44FBB96D476A3E557CAD64D9\r'
p6 = aes(K_A16, bytes.fromhex(f6[f6.index(b'[')+1:-1].decode()), enc=False)
assert p6 == b'ppppppppppp]_18:24:52,07-05-2020', p6
rec(name='s1_10_6_psa_encrypted_null', source='protocols.md §1.10 #6 (PSA case_null; no | after the pad)', frame=f6,
    key='ascii:AAAAAAAAAAAAAAAA', plaintext=p6, data=b'', timestamp=ts('18:24:52,07-05-2020'),
    payload='ok', ack_now=ts('18:24:53,07-05-2020'), ack_pad=ord('Q'),
    ack_encrypted=enc_reply(K_A16, b'ACK', b'0000', b'0', b'0', b'AAAB', ts('18:24:53,07-05-2020'), ord('Q')),
    reencode='pad=p pipe=no')

f7 = b'\nDE260072"*NULL"0000L0#000[242ff5e1d26993d8ca4a622f7d779a93096ef7ed9b5499dc13de23e1405a5764b58737251286f0d81da5134d1eebc238\r'
p7 = aes(K_S09, bytes.fromhex(f7[f7.index(b'[')+1:-1].decode()), enc=False)
assert p7[27:] == b']_03:07:43,09-22-2026', p7
rec(name='s1_10_7_s09_encrypted_null', source='protocols.md §1.10 #7 (S09 docstring; 27 random pad bytes, no |, lowercase hex)', frame=f7,
    key='hex:850cba22f7dd4f033405da83e4c5bae9', plaintext=p7, data=b'', timestamp=ts('03:07:43,09-22-2026'),
    payload='ok', ack_now=ts('03:07:44,09-22-2026'), ack_pad=ord('Q'),
    ack_encrypted=enc_reply(K_S09, b'ACK', b'0000', None, b'0', b'000', ts('03:07:44,09-22-2026'), ord('Q')))

# ---- protocols.md §1.10, social-alarm vectors made for the brief ----
s1 = b'\n21170027"ADM-CID"0001L0#1234[#1234|1101 01 001]\r'
rec(name='s1_10_cid101_new', source='protocols.md §1.10 (made for the brief)', frame=s1,
    data=b'#1234|1101 01 001', payload='ok', payload_account='1234',
    events=['code=CID\\x20101 q=new zone=1 group=1 user=- time=- text=-'],
    ack=b'\n1BC10012"ACK"0001L0#1234[]\r', duh=b'\n251F0012"DUH"0001L0#1234[]\r', reencode='yes')
assert reply(b'ACK', b'0001', None, b'0', b'1234') == b'\n1BC10012"ACK"0001L0#1234[]\r'
assert reply(b'DUH', b'0001', None, b'0', b'1234') == b'\n251F0012"DUH"0001L0#1234[]\r'
assert check(s1) == (0x2117, 0x27)

s2 = b'\n21EF0027"ADM-CID"0002L0#1234[#1234|3101 01 001]\r'
rec(name='s1_10_cid101_restore', source='protocols.md §1.10 (made for the brief)', frame=s2,
    data=b'#1234|3101 01 001', payload='ok', payload_account='1234',
    events=['code=CID\\x20101 q=restore zone=1 group=1 user=- time=- text=-'],
    ack=b'\n14310012"ACK"0002L0#1234[]\r', reencode='yes')
assert reply(b'ACK', b'0002', None, b'0', b'1234') == b'\n14310012"ACK"0002L0#1234[]\r'

s3 = b'\n685C003A"SIA-DCS"0003L0#1234[#1234|Nri1/MA001]_10:15:00,03-01-2025\r'
rec(name='s1_10_sia_ma', source='protocols.md §1.10 (made for the brief)', frame=s3,
    data=b'#1234|Nri1/MA001', timestamp=ts('10:15:00,03-01-2025'), payload='ok', payload_account='1234',
    events=['code=SIA\\x20MA q=new zone=1 group=1 user=- time=- text=-'],
    ack=b'\nD1600012"ACK"0003L0#1234[]\r', reencode='yes')
assert reply(b'ACK', b'0003', None, b'0', b'1234') == b'\nD1600012"ACK"0003L0#1234[]\r'

s4 = b'\nCBB30013"NULL"0004L0#1234[]\r'
rec(name='s1_10_null', source='protocols.md §1.10 (made for the brief)', frame=s4,
    data=b'', payload='ok', ack=b'\n0BD10012"ACK"0004L0#1234[]\r', reencode='yes')
assert reply(b'ACK', b'0004', None, b'0', b'1234') == b'\n0BD10012"ACK"0004L0#1234[]\r'

s5 = b'\n57C3003D"ADM-CID"0006R1L1#5678[#5678|1602 00 000]_10:16:00,03-01-2025\r'
assert check(s5) == (0x57C3, 0x3D)
rec(name='s1_10_cid602', source='protocols.md §1.10 (made for the brief); ACK computed here', frame=s5,
    data=b'#5678|1602 00 000', timestamp=ts('10:16:00,03-01-2025'), payload='ok', payload_account='5678',
    events=['code=CID\\x20602 q=new zone=- group=- user=- time=- text=-'],
    ack=reply(b'ACK', b'0006', b'1', b'1', b'5678'), reencode='yes')

d1 = b'\n251F0012"DUH"0001L0#1234[]\r'
rec(name='s1_10_duh', source='protocols.md §1.10 (made for the brief)', frame=d1, data=b'', payload='unsupported_token')

n1 = b'\nAA810025"NAK"0000R0L0A0[]_10:15:30,03-01-2025\r'
assert check(n1) == (0xAA81, 0x25)
rec(name='s1_10_nak', source='protocols.md §1.10 (made for the brief)', frame=n1,
    data=b'', timestamp=ts('10:15:30,03-01-2025'), nak_now=ts('10:15:30,03-01-2025'), nak=n1)

e1 = b'\nE9F40076"*ADM-CID"0007L0#1234[22471E739E277F7113F059A13EA6E7CD60AA5D374C97364650F3DF39412FCD91ADE812EAF86EED10FEB38F24223B5D88\r'
h, pl = enc_body(K128, ord('P'), b'#1234|1101 01 001]_10:15:00,03-01-2025')
assert frame(b'"*ADM-CID"0007L0#1234[' + h) == e1
ack_e1 = b'\n21590052"*ACK"0007L0#1234[78041F617F28FD338038B08B508C256CBF81660C2BCEF7CC7C414FC8D96F51A5\r'
assert enc_reply(K128, b'ACK', b'0007', None, b'0', b'1234', ts('10:15:01,03-01-2025'), ord('Q')) == ack_e1
rec(name='s1_10_aes128_cid101', source='protocols.md §1.10 (made for the brief): AES-128, fixed pad P', frame=e1,
    key='hex:000102030405060708090A0B0C0D0E0F', plaintext=pl, data=b'#1234|1101 01 001',
    timestamp=ts('10:15:00,03-01-2025'), payload='ok', payload_account='1234',
    events=['code=CID\\x20101 q=new zone=1 group=1 user=- time=- text=-'],
    ack_now=ts('10:15:01,03-01-2025'), ack_pad=ord('Q'), ack_encrypted=ack_e1, reencode='pad=P')

rec(name='s1_10_aes128_ack', source='protocols.md §1.10 (made for the brief): the *ACK of the previous frame', frame=ack_e1,
    key='hex:000102030405060708090A0B0C0D0E0F',
    plaintext=aes(K128, bytes.fromhex(ack_e1[ack_e1.index(b'[')+1:-1].decode()), enc=False),
    data=b'', timestamp=ts('10:15:01,03-01-2025'), payload='unsupported_token')

e2 = b'\nB65A0053"*NULL"0008L0#1234[775A54FF01243BF53EFC1F5D82EA5F3252F09C536D8A057E292F29DB25716878\r'
h, pl = enc_body(K128, ord('R'), b']_10:16:00,03-01-2025')
assert frame(b'"*NULL"0008L0#1234[' + h) == e2
rec(name='s1_10_aes128_null', source='protocols.md §1.10 (made for the brief): encrypted NULL, pad R', frame=e2,
    key='hex:000102030405060708090A0B0C0D0E0F', plaintext=pl, data=b'', timestamp=ts('10:16:00,03-01-2025'),
    payload='ok', ack_now=ts('10:16:01,03-01-2025'), ack_pad=ord('Q'),
    ack_encrypted=enc_reply(K128, b'ACK', b'0008', None, b'0', b'1234', ts('10:16:01,03-01-2025'), ord('Q')),
    reencode='pad=R')

# ---- constructed here (vakt) ----
def enc_frame(key, tok, seq, r, l, acct, rest, pad, pipe=True, lower=False):
    h, pl = enc_body(key, pad, rest, pipe, lower)
    return frame(header(b'*' + tok, seq, r, l, acct) + b'[' + h), pl

fr, pl = enc_frame(K192, b'SIA-DCS', b'0010', None, b'0', b'1234', b'#1234|Nri1/MA001]_10:20:00,03-01-2025', ord('S'))
rec(name='aes192_sia_ma', source='vakt: AES-192, fixed pad S', frame=fr, key='hex:' + K192.hex().upper(), plaintext=pl,
    data=b'#1234|Nri1/MA001', timestamp='2025-03-01T10:20:00Z', payload='ok', payload_account='1234',
    events=['code=SIA\\x20MA q=new zone=1 group=1 user=- time=- text=-'],
    ack_now='2025-03-01T10:20:01Z', ack_pad=ord('Q'),
    ack_encrypted=enc_reply(K192, b'ACK', b'0010', None, b'0', b'1234', '2025-03-01T10:20:01Z', ord('Q')),
    reencode='pad=S')

fr, pl = enc_frame(K256, b'ADM-CID', b'0011', b'12', b'3', b'ABCDEF0123', b'#ABCDEF0123|1100 02 015][M0026B9E4268B]_23:59:59,12-31-2025', ord('T'))
rec(name='aes256_cid100_xdata', source='vakt: AES-256, R and L, xdata inside the ciphertext, pad T', frame=fr,
    key='hex:' + K256.hex(), plaintext=pl, data=b'#ABCDEF0123|1100 02 015', xdata=[b'M0026B9E4268B'],
    timestamp='2025-12-31T23:59:59Z', payload='ok', payload_account='ABCDEF0123',
    events=['code=CID\\x20100 q=new zone=15 group=2 user=- time=- text=-'],
    ack_now='2026-01-01T00:00:00Z', ack_pad=ord('Q'),
    ack_encrypted=enc_reply(K256, b'ACK', b'0011', b'12', b'3', b'ABCDEF0123', '2026-01-01T00:00:00Z', ord('Q')),
    reencode='pad=T')

fr, pl = enc_frame(K256, b'NULL', b'0012', None, b'0', b'1234', b']_00:00:00,01-01-2026', ord('N'), lower=True)
rec(name='aes256_null_lowercase', source='vakt: AES-256 encrypted NULL, lowercase ciphertext (S09 style)', frame=fr,
    key='hex:' + K256.hex(), plaintext=pl, data=b'', timestamp='2026-01-01T00:00:00Z', payload='ok',
    ack_now='2026-01-01T00:00:01Z', ack_pad=ord('Q'),
    ack_encrypted=enc_reply(K256, b'ACK', b'0012', None, b'0', b'1234', '2026-01-01T00:00:01Z', ord('Q')))

fr, pl = enc_frame(K192, b'NULL', b'0013', None, b'0', b'1234', b']_12:00:00,06-15-2025', ord('Z'), pipe=False)
rec(name='aes192_null_no_pipe', source='vakt: AES-192 encrypted NULL without | (PSA/S09 style)', frame=fr,
    key='hex:' + K192.hex(), plaintext=pl, data=b'', timestamp='2025-06-15T12:00:00Z', payload='ok',
    ack_now='2025-06-15T12:00:00Z', ack_pad=ord('Z'), ack_pipe=False,
    ack_encrypted=enc_reply(K192, b'ACK', b'0013', None, b'0', b'1234', '2025-06-15T12:00:00Z', ord('Z'), pipe=False),
    reencode='pad=Z pipe=no')

# plaintext exactly a multiple of 16 without pad: a full 16-byte pad block.
rest = b'#1234|Nri1/MA001]_10:20:00,03-01-2025'
assert (len(rest) + 1) % 16 != 0
rest16 = b'#1234|Nri12/MA01]_10:20:00,03-01-2025'  # 38 + '|' = 39 -> pad 9; find one of 47 -> pad 16
rest16 = b'#1234|Nri1/MA001/MA002/MA0]_10:20:00,03-01-2025'
assert (len(rest16) + 1) % 16 == 0, len(rest16) + 1
fr, pl = enc_frame(K128, b'SIA-DCS', b'0014', None, b'0', b'1234', rest16, ord('F'))
assert pl[:16] == b'F' * 16
rec(name='aes128_full_pad_block', source='vakt: plaintext already a multiple of 16, so 16 pad bytes (DC-09-2013)', frame=fr,
    key='hex:' + K128.hex(), plaintext=pl, data=b'#1234|Nri1/MA001/MA002/MA0', timestamp='2025-03-01T10:20:00Z',
    payload='ok', payload_account='1234',
    events=['code=SIA\\x20MA q=new zone=1 group=1 user=- time=- text=-',
            'code=SIA\\x20MA q=new zone=2 group=1 user=- time=- text=-',
            'code=SIA\\x20MA q=new zone=0 group=1 user=- time=- text=-'],
    reencode='pad=F')

# wrong key: the §1.10 AES-128 frame with another key.
rec(name='wrong_key', source='vakt: §1.10 AES-128 *ADM-CID decrypted with a wrong key', frame=e1,
    key='hex:000102030405060708090A0B0C0D0E0E', content='undecryptable')

# decimal length quirk (PSA case_adm_cid2, Eldes).
q1 = b'\n57150047"ADM-CID"0247R4F39L4F39#4F39[#4F39|3401 01 057]\r'
assert check(q1) == (0x5715, 47)
rec(name='quirk_decimal_length', source='protocols.md §1.9 (PSA case_adm_cid2, Eldes): length 0047 is decimal', frame=q1,
    length_decimal=True, data=b'#4F39|3401 01 057', payload='ok', payload_account='4F39',
    events=['code=CID\\x20401 q=restore zone=- group=1 user=57 time=- text=-'],
    ack=reply(b'ACK', b'0247', b'4F39', b'4F39', b'4F39'))

q2 = frame(f1[9:-1], lower=True)
assert q2 == b'\n7449003f' + f1[9:], q2
rec(name='quirk_lowercase_hex', source='vakt: §1.10 #1 with lowercase CRC/length hex', frame=q2,
    data=b'#00AAAA|3407 01 001', timestamp=ts('01:59:16,09-21-2023'), payload='ok', payload_account='00AAAA',
    events=['code=CID\\x20407 q=restore zone=- group=1 user=1 time=- text=-'],
    ack=b'\n1CA50014"ACK"0078R1L0#AAAA[]\r')

q3 = frame(b'"SIA-DCS"0002#0123[#0123|Nri1/MA001]')
rec(name='quirk_missing_l', source='vakt: no L field (RS parser doc example form); the ACK has none either', frame=q3,
    data=b'#0123|Nri1/MA001', payload='ok', payload_account='0123',
    events=['code=SIA\\x20MA q=new zone=1 group=1 user=- time=- text=-'],
    ack=reply(b'ACK', b'0002', None, None, b'0123'), reencode='yes')

q4 = b'\nCA2F0038"NULL"0000L0#7890[#0000|0000 00 000]_22:13:29,12-29-2022\r'
assert check(q4) == (0xCA2F, 0x38)
rec(name='quirk_null_with_data', source='protocols.md §1.8 (PSA issue #42): NULL with data is ACKed', frame=q4,
    data=b'#0000|0000 00 000', timestamp=ts('22:13:29,12-29-2022'), payload='ok', payload_account='0000',
    ack=reply(b'ACK', b'0000', None, b'0', b'7890'))

q5 = frame(b'"SIA-DCS"0015L0#1234[Nri1/WA000]')
rec(name='quirk_sia_no_account', source='protocols.md §1.9 (PSA tests): SIA-DCS data without an account', frame=q5,
    data=b'Nri1/WA000', payload='ok', events=['code=SIA\\x20WA q=new zone=0 group=1 user=- time=- text=-'],
    ack=reply(b'ACK', b'0015', None, b'0', b'1234'))

q6 = frame(b'"SIA-DCS"0016L0#1234[|Nri1/CL501]')
rec(name='quirk_sia_bare_pipe', source='protocols.md §1.9 (PSA tests): data starting with |', frame=q6,
    data=b'|Nri1/CL501', payload='ok', events=['code=SIA\\x20CL q=new zone=501 group=1 user=- time=- text=-'],
    ack=reply(b'ACK', b'0016', None, b'0', b'1234'))

# Lupusec binary CRC: find a sequence number whose CRC has a CR or LF byte.
for n in range(1, 10000):
    body = b'"ADM-CID"%04d' % n + b'L0#1234[#1234|1101 01 001]'
    c = crc16_arc(body).to_bytes(2, 'big')
    if 0x0D in c or 0x0A in c:
        break
qb = frame(body, crc_fmt='binary')
seqb = b'%04d' % n
rec(name='quirk_binary_crc', source=f'protocols.md §1.9 (Lupusec, IOB getcrcFormat): 2-byte binary CRC containing CR/LF (seq {n})', frame=qb,
    crc_format='binary', data=b'#1234|1101 01 001', payload='ok', payload_account='1234',
    events=['code=CID\\x20101 q=new zone=1 group=1 user=- time=- text=-'],
    ack=reply(b'ACK', seqb, None, b'0', b'1234', fmt='binary'))

# Other tokens and payload errors.
o1 = frame(b'"SIA-PUL"0017L0#1234[1234]')
rec(name='other_token_duh', source='vakt: a legacy token is Other and gets DUH (§1.4)', frame=o1,
    data=b'1234', payload='unsupported_token', duh=reply(b'DUH', b'0017', None, b'0', b'1234'))

o2 = frame(b'"ADM-CID"0018L0#1234[#1234|2101 01 001]')
rec(name='cid_bad_qualifier', source='vakt: qualifier 2 (S09 restore bug, §2.2) is rejected', frame=o2,
    data=b'#1234|2101 01 001', payload='bad_qualifier', duh=reply(b'DUH', b'0018', None, b'0', b'1234'))

o3 = frame(b'"SIA-DCS"0019R0L0#1234[#1234|Nri1id12ti10:15/QA003^Pendant\xe9^/MH4][H10:14:58,03-01-2025][X093W23.456][Y45N23.456]_10:15:00,03-01-2025')
rec(name='sia_modifiers_text_xdata', source='vakt: SIA-DCS modifiers, CP1252 text, several events and xdata', frame=o3,
    data=b'#1234|Nri1id12ti10:15/QA003^Pendant\xe9^/MH4',
    xdata=[b'H10:14:58,03-01-2025', b'X093W23.456', b'Y45N23.456'], timestamp='2025-03-01T10:15:00Z',
    payload='ok', payload_account='1234',
    events=['code=SIA\\x20QA q=new zone=3 group=1 user=12 time=10:15 text=Pendant\\xEF\\xBF\\xBD',
            'code=SIA\\x20MH q=restore zone=4 group=1 user=12 time=10:15 text=-'],
    ack=reply(b'ACK', b'0019', b'0', b'0', b'1234'), reencode='yes')

# Errors.
bad = bytearray(s1); bad[1:5] = b'2118'
rec(name='err_bad_crc', source='vakt: §1.10 CID 101 with the CRC changed', frame=bytes(bad), parse='bad_crc')
bad = bytearray(s1); bad[5:9] = b'0028'
rec(name='err_bad_length', source='vakt: §1.10 CID 101 with the length changed', frame=bytes(bad), parse='bad_length')
rec(name='err_hex_seq', source='vakt: sequence number with a hex digit (dc09_spt issue #4)',
    frame=frame(b'"ADM-CID"000AL0#1234[#1234|1101 01 001]'), parse='malformed')
rec(name='err_no_account', source='vakt: no #account', frame=frame(b'"NULL"0001L0[]'), parse='malformed')
rec(name='err_lf_only', source='vakt: not a frame', frame=b'\n\r', parse='malformed')
rec(name='err_bad_timestamp', source='vakt: month 13', frame=frame(b'"NULL"0020L0#1234[]_10:00:00,13-01-2025'),
    content='bad_timestamp')
rec(name='err_trailing_garbage', source='vakt: bytes after the timestamp', frame=frame(b'"NULL"0021L0#1234[]_10:00:00,03-01-2025X'),
    content='malformed')
rec(name='err_encrypted_no_timestamp', source='vakt: encrypted NULL without the required timestamp',
    frame=enc_frame(K128, b'NULL', b'0022', None, b'0', b'1234', b']', ord('P'))[0], key='hex:' + K128.hex(),
    content='missing_timestamp')
rec(name='err_cipher_length', source='vakt: ciphertext not a whole number of blocks',
    frame=frame(b'"*NULL"0023L0#1234[00112233445566778899AABBCCDDEE'), key='hex:' + K128.hex(), content='bad_cipher_length')
rec(name='err_cipher_hex', source='vakt: ciphertext with a non-hex digit',
    frame=frame(b'"*NULL"0024L0#1234[00112233445566778899AABBCCDDEEGG'), key='hex:' + K128.hex(), content='bad_hex')

records_text = emit()
print(len(RECS), 'records; binary seq', n, qb)

# ---- scan (framing) records ----
def scanrec(name, source, stream, expect):
    return f"name: {name}\nsource: {source}\nstream: {esc(stream)}\nscan: {' '.join(expect)}\n"

scans = []
st = b'xx' + s1 + b'\0\0\0' + s4 + b'\r\n' + b'\n21170027"AD'
scans.append(scanrec('scan_garbage_nul_partial', 'vakt: garbage, a frame, trailing NULs (§1.9), a frame, stray CR LF, a partial frame', st,
    ['S2', f'F{len(s1)}', 'S3', f'F{len(s4)}', 'S1', 'S1', 'I']))
cut = b'\n7449003F"ADM'
st = cut + s1 + f1
scans.append(scanrec('scan_second_lf_restarts', 'vakt: a cut-off frame is abandoned at the next LF', st,
    [f'S{len(cut)}', f'F{len(s1)}', f'F{len(f1)}', 'I']))
st = qb + s1 + b'\n\r' + b'\n\n'
scans.append(scanrec('scan_binary_crc', 'vakt: a Lupusec frame whose binary CRC starts with LF, then a text frame, then LF CR, then an undecidable LF LF', st,
    [f'F{len(qb)}', f'F{len(s1)}', 'F2', 'I']))
st = b'no frame here'
scans.append(scanrec('scan_no_lf', 'vakt: bytes without LF are skipped whole', st, [f'S{len(st)}', 'I']))
header = open(os.path.join(HERE, 'header.txt')).read()
with open(os.path.join(HERE, '..', 'vectors.txt'), 'w') as out:
    out.write(header + records_text + '\n'.join(scans))
