//! Hot partitions and hot keys (beyond Kafka): per led partition, records/s and bytes/s over
//! the last 1, 5 and 15 minutes (exponentially weighted, ticked every 5 s as Kafka's Yammer
//! meters are), and its heaviest keys by a space-saving sketch of sampled records.
//!
//! Cost on the produce path: two relaxed adds per batch; the records of a batch are parsed
//! (decompressed if need be) only while the partition's sampled bytes stay within
//! `SAMPLE_BUDGET` per tick, then one batch in `SAMPLE_ONE_IN`, each sampled record weighted
//! by the inverse of its batch's sampling probability so estimates stay unbiased.
//! Memory per partition that has seen traffic: at most `TOP_KEYS` keys of at most
//! `MAX_KEY_BYTES` bytes each, about 4 KiB; partitions without traffic hold no sketch.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::log::batch;
use crate::log::records;

/// How often rates are updated and key counts decay.
pub const TICK_SECS: f64 = 5.0;
const WINDOWS_MIN: [f64; 3] = [1.0, 5.0, 15.0];
/// Key counts decay with this time constant, so a key's count over it is its recent rate.
const KEY_HORIZON_SECS: f64 = 60.0;
const SAMPLE_BUDGET: u64 = 1 << 20;
const SAMPLE_ONE_IN: u64 = 64;
pub const TOP_KEYS: usize = 32;
/// A sampled batch inflating past this is left out of the sample (its records still count in
/// the rates): sampling never holds more than this in memory per batch.
const SAMPLE_DECOMPRESSED_LIMIT: usize = 8 << 20;
pub const MAX_KEY_BYTES: usize = 64;

/// Records or bytes per second over 1, 5 and 15 minutes.
#[derive(Default)]
pub struct Meter {
    uncounted: AtomicU64,
    /// f64 bits of each window's rate; written only by `tick`.
    rates: [AtomicU64; 3],
    ticked: std::sync::atomic::AtomicBool,
}

impl Meter {
    pub fn mark(&self, n: u64) {
        self.uncounted.fetch_add(n, Relaxed);
    }

    fn tick(&self) {
        let instant = self.uncounted.swap(0, Relaxed) as f64 / TICK_SECS;
        // As Yammer's EWMA: the first tick starts every window at the rate seen.
        let first = !self.ticked.swap(true, Relaxed);
        for (rate, minutes) in self.rates.iter().zip(WINDOWS_MIN) {
            let old = f64::from_bits(rate.load(Relaxed));
            let alpha = 1.0 - (-TICK_SECS / (60.0 * minutes)).exp();
            let new = if first {
                instant
            } else {
                old + alpha * (instant - old)
            };
            rate.store(new.to_bits(), Relaxed);
        }
    }

    pub fn rates(&self) -> [f64; 3] {
        std::array::from_fn(|i| f64::from_bits(self.rates[i].load(Relaxed)))
    }
}

/// One tracked key: its (decayed, weighted) record and byte counts.
#[derive(Debug, Clone)]
pub struct KeyCount {
    pub key: Box<[u8]>,
    pub truncated: bool,
    pub records: f64,
    pub bytes: f64,
}

/// Space-saving (Metwally et al.): a key not tracked takes the place of the lightest one and
/// inherits its count, so every key heavier than total/TOP_KEYS is tracked.
#[derive(Default)]
struct Sketch {
    keys: Vec<KeyCount>,
    /// Every sampled record's weight, decayed alike: the denominator of a key's share.
    total_records: f64,
}

impl Sketch {
    fn add(&mut self, key: &[u8], weight: f64, bytes: f64) {
        let truncated = key.len() > MAX_KEY_BYTES;
        let key = &key[..key.len().min(MAX_KEY_BYTES)];
        self.total_records += weight;
        if let Some(k) = self.keys.iter_mut().find(|k| &*k.key == key) {
            k.records += weight;
            k.bytes += bytes;
            return;
        }
        let entry = KeyCount {
            key: key.into(),
            truncated,
            records: weight,
            bytes,
        };
        if self.keys.len() < TOP_KEYS {
            self.keys.push(entry);
            return;
        }
        let lightest = self
            .keys
            .iter_mut()
            .min_by(|a, b| a.records.total_cmp(&b.records));
        if let Some(min) = lightest {
            let (records, bytes) = (min.records + weight, min.bytes + bytes);
            *min = KeyCount {
                records,
                bytes,
                ..entry
            };
        }
    }

    fn decay(&mut self) {
        let d = (-TICK_SECS / KEY_HORIZON_SECS).exp();
        self.total_records *= d;
        for k in &mut self.keys {
            k.records *= d;
            k.bytes *= d;
        }
        // Keys that faded to almost nothing leave room without waiting to be displaced.
        self.keys.retain(|k| k.records >= 0.01);
    }
}

/// What one led partition has taken in lately.
#[derive(Default)]
pub struct PartitionActivity {
    pub records: Meter,
    pub bytes: Meter,
    batches: AtomicU64,
    /// Bytes sampled since the last tick, against `SAMPLE_BUDGET`.
    sampled_bytes: AtomicU64,
    sketch: Mutex<Option<Sketch>>,
}

/// A partition's heaviest keys, per second over about the last minute.
#[derive(Debug, Clone)]
pub struct HotKey {
    pub key: String,
    pub records_per_s: f64,
    pub bytes_per_s: f64,
    /// Of the partition's records.
    pub share: f64,
}

impl PartitionActivity {
    /// Records `batches` (the bytes a producer sent, already appended) holding `records`.
    pub fn appended(&self, batches: &[u8], records: u64) {
        self.records.mark(records);
        self.bytes.mark(batches.len() as u64);
        let n = self.batches.fetch_add(1, Relaxed);
        let weight = if self.sampled_bytes.load(Relaxed) < SAMPLE_BUDGET {
            1.0
        } else if n.is_multiple_of(SAMPLE_ONE_IN) {
            SAMPLE_ONE_IN as f64
        } else {
            return;
        };
        self.sampled_bytes.fetch_add(batches.len() as u64, Relaxed);
        let mut sketch = self.sketch.lock().unwrap_or_else(|p| p.into_inner());
        let sketch = sketch.get_or_insert_with(Sketch::default);
        for (range, h) in batch::headers(batches) {
            let Some(bytes) = batches.get(range) else {
                continue;
            };
            if h.is_control() {
                continue;
            }
            let Ok(plain) = records::plain(bytes, &h, SAMPLE_DECOMPRESSED_LIMIT) else {
                continue;
            };
            let Ok(parsed) = records::parse(&plain, &h) else {
                continue;
            };
            for r in parsed {
                let key = r.key.and_then(|k| plain.get(k)).unwrap_or_default();
                sketch.add(key, weight, weight * r.range.len() as f64);
            }
        }
    }

    /// Every TICK_SECS: rates move, key counts decay.
    pub fn tick(&self) {
        self.records.tick();
        self.bytes.tick();
        self.sampled_bytes.store(0, Relaxed);
        if let Some(s) = self
            .sketch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            s.decay();
        }
    }

    /// The `n` heaviest keys by records.
    pub fn top_keys(&self, n: usize) -> Vec<HotKey> {
        let guard = self.sketch.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = guard.as_ref() else {
            return Vec::new();
        };
        let mut keys = s.keys.clone();
        let total = s.total_records;
        drop(guard);
        keys.sort_by(|a, b| b.records.total_cmp(&a.records));
        keys.truncate(n);
        // A decayed count holds about KEY_HORIZON_SECS of records.
        keys.into_iter()
            .map(|k| HotKey {
                key: display_key(&k.key, k.truncated),
                records_per_s: k.records / KEY_HORIZON_SECS,
                bytes_per_s: k.bytes / KEY_HORIZON_SECS,
                share: if total > 0.0 { k.records / total } else { 0.0 },
            })
            .collect()
    }
}

/// A key as text: UTF-8 as is, other bytes escaped; "…" marks a truncated key.
fn display_key(key: &[u8], truncated: bool) -> String {
    let mut s: String = key.escape_ascii().to_string();
    if let Ok(text) = std::str::from_utf8(key) {
        s = text.to_string();
    }
    if truncated {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_follows_a_steady_rate() {
        let m = Meter::default();
        for _ in 0..200 {
            m.mark(500);
            m.tick();
        }
        let [one, five, fifteen] = m.rates();
        assert!((one - 100.0).abs() < 1.0, "{one}");
        assert!((five - 100.0).abs() < 1.0, "{five}");
        assert!((fifteen - 100.0).abs() < 1.0, "{fifteen}");
        for _ in 0..24 {
            m.tick();
        }
        let [one, five, _] = m.rates();
        assert!(
            one < 15.0 && five > one,
            "after two idle minutes: {one} {five}"
        );
    }

    #[test]
    fn sketch_finds_the_heavy_key_among_many() {
        let mut s = Sketch::default();
        for i in 0..10_000u32 {
            let key = if i % 10 == 0 {
                format!("cold-{i}")
            } else {
                "hot".to_string()
            };
            s.add(key.as_bytes(), 1.0, 10.0);
            if i % 3 == 0 {
                s.add(format!("other-{i}").as_bytes(), 1.0, 10.0);
            }
        }
        assert!(s.keys.len() <= TOP_KEYS);
        let top = s
            .keys
            .iter()
            .max_by(|a, b| a.records.total_cmp(&b.records))
            .map(|k| (&*k.key, k.records));
        assert_eq!(top.map(|t| t.0), Some(&b"hot"[..]));
        let share = top.map_or(0.0, |t| t.1) / s.total_records;
        assert!((0.6..=0.75).contains(&share), "share {share}");
    }

    #[test]
    fn sampled_batches_count_every_record_of_a_partition() {
        let p = PartitionActivity::default();
        let one_key: Vec<_> = (0..50)
            .map(|i| {
                let value = bytes::Bytes::from(vec![b'v'; 1000]);
                batch::plain_record(i, 0, Some(bytes::Bytes::from("hot")), Some(value))
            })
            .collect();
        let b = batch::encode(&one_key).expect("batch");
        let mut records = 0u64;
        // 20 MB: well past the sampling budget, so most batches are sampled one in 64.
        for _ in 0..400 {
            records += 50;
            p.appended(&b, 50);
        }
        let top = p.top_keys(3);
        assert_eq!(top.len(), 1, "{top:?}");
        let estimated = top[0].records_per_s * KEY_HORIZON_SECS;
        let ratio = estimated / records as f64;
        assert!(
            (0.8..=1.2).contains(&ratio),
            "estimated {estimated} of {records}"
        );
        assert!((top[0].share - 1.0).abs() < 1e-9);
    }
}
