//! `CompileCache`: round trips, keys, validation and discarding of corrupt entries, LRU eviction,
//! and concurrent writers and readers — threads of one process and several processes.
//!
//! The multi-process test runs this test executable again (`race_child`) in several processes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ane_runtime::cache::{content_hash, CacheEntry, CacheKey, CompileCache};
use ane_runtime::Error;

/// A fresh, empty directory under the target's temp dir.
fn temp_dir(name: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cache-{name}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn key(program: &str) -> CacheKey {
    CacheKey::new(
        program,
        content_hash(b"weights"),
        "ane",
        "24A335",
        "ANECompiler-8.5.4",
    )
}

/// An entry's files for a payload of `len` bytes: `net.plist` names the payload, `data` holds it.
fn payload(len: usize, seed: u64) -> (String, Vec<u8>) {
    let data = (0..len)
        .map(|i| (seed.wrapping_mul(131).wrapping_add(i as u64 * 31) >> 3) as u8)
        .collect();
    (format!("len={len} seed={seed}"), data)
}

fn put_payload(cache: &CompileCache, key: &CacheKey, len: usize, seed: u64) {
    let (plist, data) = payload(len, seed);
    cache
        .put(key, &[("net.plist", plist.as_bytes()), ("data", &data)])
        .unwrap();
}

/// Whether an entry read back is one that `put_payload` wrote (its two files agree).
fn consistent(entry: &CacheEntry) -> bool {
    let Some(plist) = entry.file("net.plist") else {
        return false;
    };
    let text = String::from_utf8_lossy(plist);
    let mut parts = text.split(' ').filter_map(|p| p.split_once('='));
    let (Some(("len", len)), Some(("seed", seed))) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(len), Ok(seed)) = (len.parse(), seed.parse()) else {
        return false;
    };
    entry.files.len() == 2 && entry.file("data") == Some(&payload(len, seed).1[..])
}

#[test]
fn put_then_get_round_trips() {
    let cache = CompileCache::open(temp_dir("round-trip"), 1 << 20).unwrap();
    let k = key("program 1");
    assert_eq!(cache.get(&k), None);
    let plist = b"program(1.3) { ... }".as_slice();
    let data = vec![7u8; 70_000];
    cache
        .put(&k, &[("net.plist", plist), ("data", &data), ("empty", b"")])
        .unwrap();
    let entry = cache.get(&k).expect("hit");
    assert_eq!(entry.file("net.plist"), Some(plist));
    assert_eq!(entry.file("data"), Some(&data[..]));
    assert_eq!(entry.file("empty"), Some(&b""[..]));
    assert_eq!(entry.file("model.hwx"), None);
    let names: Vec<&str> = entry.files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["net.plist", "data", "empty"], "order kept");

    // A weight-free program has no `data`; a later put of the key replaces the entry.
    cache.put(&k, &[("net.plist", b"v2")]).unwrap();
    let entry = cache.get(&k).unwrap();
    assert_eq!(entry.files, vec![("net.plist".to_string(), b"v2".to_vec())]);

    let stats = cache.stats();
    assert_eq!(
        (
            stats.hits,
            stats.misses,
            stats.invalid_reads,
            stats.discarded
        ),
        (2, 1, 0, 0)
    );
    let reopened = CompileCache::open(cache.dir(), 1 << 20).unwrap();
    assert!(reopened.get(&k).is_some(), "entries persist across opens");
    fs::remove_dir_all(cache.dir()).unwrap();
}

#[test]
fn any_key_field_change_is_a_miss() {
    let cache = CompileCache::open(temp_dir("key-fields"), 1 << 20).unwrap();
    let w = content_hash(b"weights");
    let base = CacheKey::new("prog", w, "ane", "24A335", "c1");
    cache.put(&base, &[("net.plist", b"x")]).unwrap();
    assert!(cache.get(&base).is_some());
    let changed = [
        CacheKey::new("prog ", w, "ane", "24A335", "c1"),
        CacheKey::new("prog", content_hash(b"weightz"), "ane", "24A335", "c1"),
        CacheKey::new("prog", w, "ane-sim", "24A335", "c1"),
        CacheKey::new("prog", w, "ane", "24A336", "c1"),
        CacheKey::new("prog", w, "ane", "24A335", "c2"),
    ];
    for k in &changed {
        assert_ne!(k.hex(), base.hex());
        assert!(cache.get(k).is_none(), "{k:?} must miss");
    }
    assert_eq!(cache.stats().misses, 5);
    assert_eq!(cache.stats().discarded, 0);
    fs::remove_dir_all(cache.dir()).unwrap();
}

#[test]
fn key_digest_is_stable_and_unambiguous() {
    let a = CacheKey::new("p", [0; 32], "ab", "c", "d");
    assert_eq!(a, CacheKey::new("p", [0; 32], "ab", "c", "d"));
    assert_eq!(a.hex(), CacheKey::new("p", [0; 32], "ab", "c", "d").hex());
    assert_eq!(a.hex().len(), 64);
    assert!(a
        .hex()
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    // Field boundaries matter: moving a character between fields changes the key.
    assert_ne!(a.hex(), CacheKey::new("p", [0; 32], "a", "bc", "d").hex());
}

#[test]
fn odd_key_strings_round_trip() {
    let cache = CompileCache::open(temp_dir("odd-keys"), 1 << 20).unwrap();
    let k = CacheKey::new("p", [9; 32], "ane sim\nx", "24A335 %41", "é ver\u{0}");
    cache.put(&k, &[("net.plist", b"odd")]).unwrap();
    assert_eq!(cache.get(&k).unwrap().file("net.plist"), Some(&b"odd"[..]));
    assert!(cache
        .get(&CacheKey::new(
            "p",
            [9; 32],
            "ane sim\nx",
            "24A335 A",
            "é ver\u{0}"
        ))
        .is_none());
    fs::remove_dir_all(cache.dir()).unwrap();
}

#[test]
fn bad_file_names_are_rejected() {
    let cache = CompileCache::open(temp_dir("names"), 1 << 20).unwrap();
    let k = key("names");
    for files in [
        vec![("", b"x".as_slice())],
        vec![(".", b"x".as_slice())],
        vec![("..", b"x".as_slice())],
        vec![("a/b", b"x".as_slice())],
        vec![("../escape", b"x".as_slice())],
        vec![("/abs", b"x".as_slice())],
        vec![("with space", b"x".as_slice())],
        vec![("back\\slash", b"x".as_slice())],
        vec![("data", b"x".as_slice()), ("data", b"y".as_slice())],
    ] {
        match cache.put(&k, &files) {
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput)
            }
            other => panic!("{files:?} gave {other:?}"),
        }
    }
    assert_eq!(cache.usage().unwrap().entries, 0);
    assert!(cache.get(&k).is_none());
    fs::remove_dir_all(cache.dir()).unwrap();
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

#[test]
fn corrupt_entries_are_discarded_counted_and_repaired() {
    type Corrupt = fn(&Path, &[u8], &[u8]) -> Vec<u8>;
    // Each takes the entry's path, its valid bytes and another key's valid entry bytes, and
    // returns the corrupted bytes to write in its place.
    let kinds: [(&str, Corrupt); 11] = [
        ("truncated by one byte", |_, b, _| b[..b.len() - 1].to_vec()),
        ("truncated to half", |_, b, _| b[..b.len() / 2].to_vec()),
        ("empty", |_, _, _| Vec::new()),
        ("flipped payload byte", |_, b, _| {
            let mut b = b.to_vec();
            *b.last_mut().unwrap() ^= 0x01;
            b
        }),
        ("flipped manifest byte (file name)", |_, b, _| {
            let mut b = b.to_vec();
            let at = find(&b, b"file data") + 6;
            b[at] = b'b';
            b
        }),
        ("files missing after manifest", |_, b, _| {
            let end = find(b, b"manifest-sha256 ");
            let nl = end + b[end..].iter().position(|&c| c == b'\n').unwrap();
            b[..=nl].to_vec()
        }),
        ("trailing bytes", |_, b, _| [b, b"junk"].concat()),
        ("garbage", |_, _, _| b"not a cache entry at all\n".to_vec()),
        ("other format version", |_, b, _| {
            let mut b = b.to_vec();
            let at = find(&b, b" 1\n");
            b[at + 1] = b'2';
            b
        }),
        ("another key's entry", |_, _, other| other.to_vec()),
        ("a directory", |p, _, _| {
            fs::remove_file(p).unwrap();
            fs::create_dir(p).unwrap();
            Vec::new()
        }),
    ];
    let cache = CompileCache::open(temp_dir("corrupt"), 1 << 20).unwrap();
    let other = key("other program");
    put_payload(&cache, &other, 300, 1);
    let other_bytes = fs::read(cache.entry_path(&other)).unwrap();
    let mut discarded = 0;
    for (i, (what, corrupt)) in kinds.iter().enumerate() {
        let k = key(&format!("program {i}"));
        put_payload(&cache, &k, 5_000, i as u64);
        let path = cache.entry_path(&k);
        let bytes = corrupt(&path, &fs::read(&path).unwrap(), &other_bytes);
        if !path.is_dir() {
            fs::write(&path, bytes).unwrap();
        }
        assert!(cache.get(&k).is_none(), "{what}: corrupt entry was loaded");
        if path.is_dir() {
            // Not a file the cache wrote: never loaded, left alone, replaced by the next put.
            fs::remove_dir(&path).unwrap();
        } else {
            discarded += 1;
            assert!(!path.exists(), "{what}: corrupt entry was not deleted");
        }
        assert_eq!(cache.stats().discarded, discarded, "{what}");
        assert_eq!(cache.stats().invalid_reads, i as u64 + 1, "{what}");
        put_payload(&cache, &k, 5_000, i as u64);
        let entry = cache
            .get(&k)
            .unwrap_or_else(|| panic!("{what}: not repaired"));
        assert!(consistent(&entry), "{what}");
    }
    assert!(cache.get(&other).is_some(), "other entries untouched");
    fs::remove_dir_all(cache.dir()).unwrap();
}

#[test]
fn eviction_keeps_the_bound_and_drops_the_least_recently_used() {
    let cache = CompileCache::open(temp_dir("evict"), 25_000).unwrap();
    let (a, b, c) = (key("a"), key("b"), key("c"));
    let pause = || std::thread::sleep(Duration::from_millis(5));
    put_payload(&cache, &a, 10_000, 1);
    pause();
    put_payload(&cache, &b, 10_000, 2);
    pause();
    assert!(
        cache.get(&a).is_some(),
        "touch a: b is now least recently used"
    );
    pause();
    put_payload(&cache, &c, 10_000, 3);
    let usage = cache.usage().unwrap();
    assert_eq!(usage.entries, 2);
    assert!(usage.bytes <= 25_000, "{usage:?}");
    assert_eq!(cache.stats().evictions, 1);
    assert!(cache.get(&b).is_none(), "b was evicted");
    assert!(cache.get(&a).is_some());
    assert!(cache.get(&c).is_some());
    assert_eq!(cache.stats().discarded, 0);

    // An entry bigger than the whole bound is not stored and evicts nothing.
    put_payload(&cache, &key("huge"), 30_000, 4);
    assert!(cache.get(&key("huge")).is_none());
    assert_eq!(cache.usage().unwrap().entries, 2);
    fs::remove_dir_all(cache.dir()).unwrap();
}

#[test]
fn clear_deletes_entries_and_partial_writes_are_swept() {
    let cache = CompileCache::open(temp_dir("clear"), 1 << 20).unwrap();
    // A crashed writer's leftover: never visible as an entry, removed by the next writer.
    let leftover = cache.dir().join("tmp").join("deadbeef.1-0.partial");
    fs::write(&leftover, b"half an entr").unwrap();
    put_payload(&cache, &key("x"), 100, 1);
    put_payload(&cache, &key("y"), 100, 2);
    assert!(!leftover.exists());
    assert_eq!(cache.usage().unwrap().entries, 2);
    cache.clear().unwrap();
    assert_eq!(cache.usage().unwrap().entries, 0);
    assert!(cache.get(&key("x")).is_none());
    put_payload(&cache, &key("x"), 100, 1);
    assert!(cache.get(&key("x")).is_some(), "usable after clear");
    fs::remove_dir_all(cache.dir()).unwrap();
}

/// One racer: many puts of differently sized payloads to a few shared keys (mostly the first),
/// each followed by a get; panics on any inconsistent or discarded read.
fn race(cache: &CompileCache, id: u64, rounds: u64) {
    let keys = [key("shared"), key("second"), key("third")];
    for i in 0..rounds {
        let k = &keys[if i % 4 == 3 {
            1 + (i / 4 % 2) as usize
        } else {
            0
        }];
        let len = 1_000 + ((id * 7_919 + i * 104_729) % 40_000) as usize;
        put_payload(cache, k, len, id * 1_000_000 + i);
        // A miss is allowed (another racer's put may have evicted it); a bad read is not.
        if let Some(entry) = cache.get(k) {
            assert!(consistent(&entry), "racer {id} read an inconsistent entry");
        }
    }
    let stats = cache.stats();
    assert_eq!(
        (stats.invalid_reads, stats.discarded),
        (0, 0),
        "racer {id} read a corrupt or torn entry"
    );
}

#[test]
fn many_threads_share_one_cache_directory() {
    let dir = temp_dir("threads");
    let shared = CompileCache::open(&dir, 100_000).unwrap();
    std::thread::scope(|s| {
        for id in 0..6 {
            let (shared, dir) = (&shared, &dir);
            s.spawn(move || {
                if id % 2 == 0 {
                    race(shared, id, 40);
                } else {
                    // Its own handle, as another process would have.
                    race(&CompileCache::open(dir, 100_000).unwrap(), id, 40);
                }
            });
        }
    });
    let entry = shared.get(&key("shared")).expect("last writer's entry");
    assert!(consistent(&entry));
    assert!(shared.usage().unwrap().bytes <= 100_000);
    fs::remove_dir_all(&dir).unwrap();
}

/// In a child started by `processes_race_on_one_entry`: races on the cache named by
/// `ANE_CACHE_RACE_DIR`. Does nothing in a normal test run.
#[test]
fn race_child() {
    let Some(dir) = std::env::var_os("ANE_CACHE_RACE_DIR") else {
        return;
    };
    let id: u64 = std::env::var("ANE_CACHE_RACE_ID").unwrap().parse().unwrap();
    let cache = CompileCache::open(PathBuf::from(dir), 100_000).unwrap();
    race(&cache, id, 60);
    let s = cache.stats();
    println!(
        "RACE_CHILD id={id} hits={} misses={} invalid_reads={} discarded={} evictions={}",
        s.hits, s.misses, s.invalid_reads, s.discarded, s.evictions
    );
}

#[test]
fn processes_race_on_one_entry() {
    let dir = temp_dir("processes");
    CompileCache::open(&dir, 100_000).unwrap();
    let children: Vec<_> = (0..3)
        .map(|id| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "race_child", "--nocapture", "--test-threads=1"])
                .env("ANE_CACHE_RACE_DIR", &dir)
                .env("ANE_CACHE_RACE_ID", (100 + id).to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "racer failed:\n{stdout}\n{stderr}");
        assert!(
            stdout.contains("RACE_CHILD") && stdout.contains("invalid_reads=0 discarded=0"),
            "racer did not run: {stdout}"
        );
    }
    let cache = CompileCache::open(&dir, 100_000).unwrap();
    let entry = cache
        .get(&key("shared"))
        .expect("the shared entry survives");
    assert!(consistent(&entry));
    assert_eq!(cache.stats().discarded, 0);
    assert!(cache.usage().unwrap().bytes <= 100_000);
    assert_eq!(
        fs::read_dir(dir.join("tmp")).unwrap().count(),
        0,
        "no partial writes left"
    );
    fs::remove_dir_all(&dir).unwrap();
}
