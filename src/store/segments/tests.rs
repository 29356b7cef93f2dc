use super::*;

/// `n` bytes that do not compress, made from `seed` (splitmix64).
fn mixed(seed: u64, n: usize) -> Vec<u8> {
    (0..n as u64)
        .map(|i| {
            let mut z = (seed << 20 | i).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// The payload of record `id`: bytes that do not compress, so a commit of these is stored
/// plain (its length varies with the id).
fn payload(id: u64) -> Vec<u8> {
    mixed(id, (id % 7) as usize * 11 + 100)
}

/// The payload of record `id` as the journal's are: JSON whose names and most values
/// repeat, so a commit of these is stored compressed.
fn json_payload(id: u64) -> Vec<u8> {
    format!(
        r#"{{"id":0,"account":"1234","line":"0","receiver":"R1","seq":"{id:04}","protocol":"ADM-CID","event":"E130","zone":"{:03}","received_at":"2026-12-07T20:00:00Z","flags":[]}}"#,
        id % 7
    )
    .into_bytes()
}

/// How the payloads of a test are made.
type Payloads = fn(u64) -> Vec<u8>;

fn dedup(id: u64) -> Option<[u8; 16]> {
    (id % 3 != 0).then(|| {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&id.to_le_bytes());
        k
    })
}

/// Appends a commit of ids `first..first + n`.
fn commit(log: &mut SegmentLog, first: u64, n: u64) {
    commit_of(log, first, n, payload);
}

/// [`commit`] with the payloads of `pay`.
fn commit_of(log: &mut SegmentLog, first: u64, n: u64, pay: Payloads) {
    let payloads: Vec<Vec<u8>> = (first..first + n).map(pay).collect();
    let entries: Vec<Entry<'_>> = (first..first + n)
        .zip(&payloads)
        .map(|(id, p)| Entry {
            received_ms: 1_800_000_000_000 + id as i64,
            dedup: dedup(id),
            payload: p,
        })
        .collect();
    log.append(first, &entries).unwrap();
}

/// Checks that `records` are ids `from..from + n` as [`commit`] wrote them.
fn check(records: &[LogRecord], from: u64, n: u64) {
    check_of(records, from, n, payload);
}

/// [`check`] with the payloads of `pay`.
fn check_of(records: &[LogRecord], from: u64, n: u64, pay: Payloads) {
    let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
    assert_eq!(ids, (from..from + n).collect::<Vec<_>>());
    for r in records {
        assert_eq!(r.payload, pay(r.id), "id {}", r.id);
        assert_eq!(r.dedup, dedup(r.id), "id {}", r.id);
        assert_eq!(r.received_ms, 1_800_000_000_000 + r.id as i64);
    }
}

fn small() -> LogOptions {
    LogOptions { segment_bytes: 600 }
}

#[test]
fn commits_read_back_by_id_across_segments_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, rec) = SegmentLog::open(dir.path(), small()).unwrap();
    assert_eq!(rec, Recovered::default());
    assert_eq!(log.next_id(), 1);
    assert!(log.after(0, 10).unwrap().is_empty());
    let mut next = 1;
    for n in [1, 5, 3, 8, 2, 1, 13, 4] {
        commit(&mut log, next, n);
        next += n;
    }
    assert_eq!(log.next_id(), next);
    assert!(log.segment_ids().len() > 2, "{:?}", log.segment_ids());
    assert_eq!(log.segment_ids()[0], 1);
    check(&log.after(0, 1000).unwrap(), 1, next - 1);
    check(&log.after(6, 4).unwrap(), 7, 4);
    check(&log.after(next - 2, 100).unwrap(), next - 1, 1);
    assert!(log.after(next - 1, 100).unwrap().is_empty());
    // Every starting point, within a commit and at a segment's edge.
    for after in 0..next {
        check(
            &log.after(after, 3).unwrap(),
            after + 1,
            3.min(next - 1 - after),
        );
    }
    drop(log);
    let (mut log, rec) = SegmentLog::open(dir.path(), small()).unwrap();
    assert_eq!(rec.cut_bytes, 0);
    assert_eq!(log.next_id(), next);
    check(&log.after(0, 1000).unwrap(), 1, next - 1);
    commit(&mut log, next, 2);
    check(&log.after(next - 1, 10).unwrap(), next, 2);
    // A reader of its own sees what was appended.
    let mut reader = SegmentLog::open_read(dir.path(), small()).unwrap();
    check(&reader.after(0, 1000).unwrap(), 1, next + 1);
}

#[test]
fn a_commit_out_of_order_or_too_large_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), LogOptions::default()).unwrap();
    commit(&mut log, 1, 3);
    let p = [1u8; 4];
    let e = [Entry {
        received_ms: 0,
        dedup: None,
        payload: &p,
    }];
    assert!(matches!(
        log.append(3, &e),
        Err(LogError::Gap {
            first_id: 3,
            next: 4
        })
    ));
    assert!(matches!(log.append(5, &e), Err(LogError::Gap { .. })));
    let big = vec![0u8; MAX_PAYLOAD_BYTES + 1];
    let e = [Entry {
        received_ms: 0,
        dedup: None,
        payload: &big,
    }];
    assert!(matches!(log.append(4, &e), Err(LogError::TooLarge(_))));
    // Nothing of them was written: the next commit follows on.
    log.append(4, &[]).unwrap();
    assert_eq!(log.next_id(), 4);
    commit(&mut log, 4, 1);
    check(&log.after(0, 10).unwrap(), 1, 4);
}

/// The log of `commits` (ids from 1), each commit's end offset in the newest segment.
/// Writes commits of `commits` records each with the payloads of `pay`: their ends, and
/// the segment. Checks that every commit was stored as `magic` says.
fn written(dir: &Path, commits: &[u64], pay: Payloads, magic: [u8; 4]) -> (Vec<u64>, PathBuf) {
    let (mut log, _) = SegmentLog::open(dir, LogOptions::default()).unwrap();
    let mut ends = vec![0];
    let mut next = 1;
    for &n in commits {
        commit_of(&mut log, next, n, pay);
        next += n;
        ends.push(log.active_len);
    }
    let path = dir.join(segment_name(1));
    let bytes = std::fs::read(&path).unwrap();
    for &at in &ends[..ends.len() - 1] {
        assert_eq!(bytes[at as usize..at as usize + 4], magic, "commit at {at}");
    }
    ends.remove(0);
    (ends, path)
}

/// Both kinds of commit: stored plain and stored compressed.
const KINDS: [(Payloads, [u8; 4]); 2] = [(payload, MAGIC), (json_payload, MAGIC_LZ4)];

#[test]
fn a_torn_last_commit_is_cut_at_every_byte_and_every_synced_one_kept() {
    for (pay, magic) in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let (ends, path) = written(dir.path(), &[2, 3, 4], pay, magic);
        let whole = std::fs::read(&path).unwrap();
        let synced = ends[1];
        assert_eq!(whole.len() as u64, ends[2]);
        for cut in synced..ends[2] {
            std::fs::write(&path, &whole[..cut as usize]).unwrap();
            let (mut log, rec) = SegmentLog::open(dir.path(), LogOptions::default()).unwrap();
            assert_eq!(rec.cut_bytes, cut - synced, "cut at {cut}");
            assert_eq!(log.next_id(), 6, "cut at {cut}");
            check_of(&log.after(0, 100).unwrap(), 1, 5, pay);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), synced);
            // It goes on from there, and the next start finds it whole.
            commit_of(&mut log, 6, 4, pay);
            drop(log);
            let (mut log, rec) = SegmentLog::open(dir.path(), LogOptions::default()).unwrap();
            assert_eq!(rec.cut_bytes, 0);
            check_of(&log.after(0, 100).unwrap(), 1, 9, pay);
        }
    }
}

#[test]
fn a_damaged_last_commit_is_cut_at_every_byte_and_every_synced_one_kept() {
    for (pay, magic) in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let (ends, path) = written(dir.path(), &[2, 3, 4], pay, magic);
        let whole = std::fs::read(&path).unwrap();
        let synced = ends[1] as usize;
        // Each byte flipped three ways, and the magic turned into the other kind's.
        let other = if magic == MAGIC { MAGIC_LZ4 } else { MAGIC };
        let mut damaged: Vec<(usize, Vec<u8>)> = Vec::new();
        for at in synced..whole.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut bad = whole.clone();
                bad[at] ^= flip;
                damaged.push((at, bad));
            }
        }
        let mut swapped = whole.clone();
        swapped[synced..synced + 4].copy_from_slice(&other);
        damaged.push((synced, swapped));
        for (at, bad) in damaged {
            std::fs::write(&path, &bad).unwrap();
            let (mut log, rec) = SegmentLog::open(dir.path(), LogOptions::default()).unwrap();
            assert_eq!(rec.cut_bytes, (whole.len() - synced) as u64, "byte {at}");
            assert_eq!(log.next_id(), 6, "byte {at}");
            check_of(&log.after(0, 100).unwrap(), 1, 5, pay);
        }
    }
}

#[test]
fn journal_like_commits_are_stored_compressed_and_plain_ones_beside_them_read_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), LogOptions::default()).unwrap();
    commit_of(&mut log, 1, 10, json_payload);
    let compressed = log.active_len;
    let plain_len: usize = (1..=10)
        .map(|id| 8 + 1 + 16 + 4 + json_payload(id).len())
        .sum();
    // The same ten records take well under half their plain size.
    assert!(
        (compressed as usize) < (HEADER_BYTES + plain_len) / 2,
        "{compressed} bytes stored for {plain_len}"
    );
    commit_of(&mut log, 11, 3, payload);
    commit_of(&mut log, 14, 10, json_payload);
    drop(log);
    let (mut log, rec) = SegmentLog::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(rec, Recovered::default());
    let all = log.after(0, 100).unwrap();
    check_of(&all[..10], 1, 10, json_payload);
    check_of(&all[10..13], 11, 3, payload);
    check_of(&all[13..], 14, 10, json_payload);
}

#[test]
fn damage_before_a_whole_commit_is_reported_not_cut() {
    for (pay, magic) in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let (ends, path) = written(dir.path(), &[2, 3, 4], pay, magic);
        let whole = std::fs::read(&path).unwrap();
        // A byte of the middle commit's body: the last commit after it is whole.
        let mut bad = whole.clone();
        bad[ends[0] as usize + HEADER_BYTES + 3] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let e = SegmentLog::open(dir.path(), LogOptions::default()).unwrap_err();
        assert!(matches!(e, LogError::Corrupt { .. }), "{e}");
        // Nothing was cut.
        assert_eq!(std::fs::read(&path).unwrap(), bad);
    }
}

#[test]
fn damage_in_an_older_segment_is_reported_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), small()).unwrap();
    let mut next = 1;
    while log.segment_ids().len() < 3 {
        commit(&mut log, next, 3);
        next += 3;
    }
    drop(log);
    let first = dir.path().join(segment_name(1));
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[HEADER_BYTES + 1] ^= 0x04;
    std::fs::write(&first, &bytes).unwrap();
    // The start reads only the newest segment.
    let (mut log, rec) = SegmentLog::open(dir.path(), small()).unwrap();
    assert_eq!(rec.cut_bytes, 0);
    assert_eq!(log.next_id(), next);
    assert!(matches!(log.after(0, 10), Err(LogError::Corrupt { .. })));
    // The records of the whole segments still read.
    let second = log.segment_ids()[1];
    check(&log.after(second - 1, 3).unwrap(), second, 3);
}

#[test]
fn an_empty_newest_segment_continues_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), small()).unwrap();
    let mut next = 1;
    while log.segment_ids().len() < 2 {
        commit(&mut log, next, 3);
        next += 3;
    }
    drop(log);
    // A crash after the new segment's name was synced, before its first commit.
    std::fs::write(dir.path().join(segment_name(next)), b"").unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), small()).unwrap();
    assert_eq!(log.next_id(), next);
    commit(&mut log, next, 2);
    check(&log.after(0, 1000).unwrap(), 1, next + 1);
}

#[test]
fn a_reader_beside_the_writer_sees_new_segments_and_reads_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), small()).unwrap();
    commit(&mut log, 1, 4);
    let mut reader = SegmentLog::open_read(dir.path(), small()).unwrap();
    check(&reader.after(0, 100).unwrap(), 1, 4);
    let mut next = 5;
    while log.segment_ids().len() < 4 {
        commit(&mut log, next, 3);
        next += 3;
    }
    // Without a refresh it knows only the segments it listed.
    assert!(reader.segment_ids().len() < 4);
    reader.refresh().unwrap();
    assert_eq!(reader.segment_ids(), log.segment_ids());
    check(&reader.after(0, 1000).unwrap(), 1, next - 1);
    let mut back = Vec::new();
    reader
        .rev(|r| {
            back.push(r.id);
            true
        })
        .unwrap();
    assert_eq!(back, (1..next).rev().collect::<Vec<_>>());
    // Stopped early, it reads no further.
    let mut newest = Vec::new();
    reader
        .rev(|r| {
            newest.push(r.id);
            newest.len() < 5
        })
        .unwrap();
    assert_eq!(newest, (next - 5..next).rev().collect::<Vec<_>>());
}

#[test]
fn sealed_segments_are_listed_and_removed_but_never_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), small()).unwrap();
    let mut next = 1;
    while log.segment_ids().len() < 4 {
        commit(&mut log, next, 3);
        next += 3;
    }
    let ids = log.segment_ids();
    let mut reader = SegmentLog::open_read(dir.path(), small()).unwrap();
    let sealed: Vec<Sealed> = reader
        .sealed_ids()
        .into_iter()
        .map(|id| reader.sealed(id).unwrap().unwrap())
        .collect();
    assert_eq!(
        reader.sealed(*ids.last().unwrap()).unwrap(),
        None,
        "the newest"
    );
    // Every segment but the newest, each ending where the next begins, its newest time its
    // last record's.
    assert_eq!(
        sealed.iter().map(|s| s.first_id).collect::<Vec<_>>(),
        ids[..ids.len() - 1]
    );
    for (s, next_first) in sealed.iter().zip(&ids[1..]) {
        assert_eq!(s.last_id, next_first - 1);
        assert_eq!(s.newest_ms, 1_800_000_000_000 + s.last_id as i64);
        assert!(s.bytes > 0);
    }
    // The newest is refused; the oldest goes, from the reader and from the disk.
    assert!(!reader.remove(*ids.last().unwrap()).unwrap());
    assert!(reader.remove(ids[0]).unwrap());
    assert!(!reader.remove(ids[0]).unwrap());
    assert_eq!(reader.segment_ids(), ids[1..]);
    check(&reader.after(0, 1000).unwrap(), ids[1], next - ids[1]);
    // Another reader that listed it forgets it at its refresh, and reads on from what is left.
    let mut other = SegmentLog::open_read(dir.path(), small()).unwrap();
    other.segments.insert(
        ids[0],
        Segment {
            first_id: ids[0],
            path: dir.path().join(segment_name(ids[0])),
            index: None,
        },
    );
    other.refresh().unwrap();
    assert_eq!(other.segment_ids(), ids[1..]);
    // The writer goes on appending after a removal, and a reopen finds the rest.
    log.forget(ids[0]);
    commit(&mut log, next, 2);
    drop(log);
    let (mut log, rec) = SegmentLog::open(dir.path(), small()).unwrap();
    assert_eq!(rec, Recovered::default());
    assert_eq!(log.next_id(), next + 2);
    check(&log.after(0, 1000).unwrap(), ids[1], next + 2 - ids[1]);
}

#[test]
fn a_long_segment_reads_from_its_index_not_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), LogOptions::default()).unwrap();
    // Commits of about 8 KiB (bytes that do not compress): some 40 index entries in one
    // segment.
    let big: Vec<u8> = (0..8 * 1024 / 8).flat_map(|i| mixed(i, 8)).collect();
    let entries: Vec<Entry<'_>> = (0..1)
        .map(|_| Entry {
            received_ms: 0,
            dedup: None,
            payload: &big,
        })
        .collect();
    for id in 1..=320 {
        log.append(id, &entries).unwrap();
    }
    let index = log
        .segments
        .values()
        .next_back()
        .unwrap()
        .index
        .clone()
        .unwrap();
    assert!(index.len() >= 30, "{}", index.len());
    assert!(index.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
    // A reader builds the same index on its first read, and extends it as the log grows.
    let mut reader = SegmentLog::open_read(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(reader.after(300, 5).unwrap().len(), 5);
    assert_eq!(
        reader.segments.values().next_back().unwrap().index,
        Some(index.clone())
    );
    for id in 321..=400 {
        log.append(id, &entries).unwrap();
    }
    let got = reader.after(395, 10).unwrap();
    assert_eq!(
        got.iter().map(|r| r.id).collect::<Vec<_>>(),
        [396, 397, 398, 399, 400]
    );
    let grown = reader
        .segments
        .values()
        .next_back()
        .unwrap()
        .index
        .clone()
        .unwrap();
    assert!(
        grown.len() > index.len(),
        "{} > {}",
        grown.len(),
        index.len()
    );
}

#[test]
fn names_that_are_not_segments_are_left_alone() {
    assert_eq!(segment_id("00000000000000000001.seg"), Some(1));
    assert_eq!(segment_id(&segment_name(u64::MAX)), Some(u64::MAX));
    for bad in [
        "1.seg",
        "0000000000000000000a.seg",
        "00000000000000000001.log",
        "",
    ] {
        assert_eq!(segment_id(bad), None, "{bad}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Reading a segment never panics, whatever its bytes: a whole commit, or the reason not.
    #[test]
    fn any_bytes_read_as_commits_or_damage(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let mut r = bytes.as_slice();
        for _ in 0..64 {
            match read_commit(&mut r) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let _ = later_whole_commit(&bytes, 0);
    }

    /// A compressed commit whose checksum holds, whatever its body, reads as records or
    /// damage and never panics (a checksum that holds over a bad block: a bug, or a forgery).
    #[test]
    fn any_compressed_body_with_its_checksum_reads_or_is_damage(
        len in 0u32..100_000,
        block in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        count in 0u32..8,
    ) {
        let mut body = len.to_le_bytes().to_vec();
        body.extend_from_slice(&block);
        let mut bytes = MAGIC_LZ4.to_vec();
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        let crc = checksum(&bytes[..20], &body);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&body);
        let _ = read_commit(&mut bytes.as_slice());
        let _ = later_whole_commit(&bytes, 0);
    }

    /// Any commit reads back as it was written.
    #[test]
    fn commits_round_trip(
        first in 1u64..u64::MAX / 2,
        records in proptest::collection::vec(
            (proptest::prelude::any::<i64>(), proptest::option::of(proptest::prelude::any::<[u8; 16]>()),
             proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)),
            1..8),
    ) {
        let entries: Vec<Entry<'_>> = records
            .iter()
            .map(|(ms, k, p)| Entry { received_ms: *ms, dedup: *k, payload: p })
            .collect();
        let bytes = encode_commit(first, &entries).unwrap();
        let (head, back) = read_commit(&mut bytes.as_slice()).unwrap().unwrap();
        proptest::prop_assert_eq!(head.first_id, first);
        proptest::prop_assert_eq!(back.len(), records.len());
        for (i, (r, (ms, k, p))) in back.iter().zip(&records).enumerate() {
            proptest::prop_assert_eq!(r.id, first + i as u64);
            proptest::prop_assert_eq!(r.received_ms, *ms);
            proptest::prop_assert_eq!(&r.dedup, k);
            proptest::prop_assert_eq!(&r.payload, p);
        }
    }
}
