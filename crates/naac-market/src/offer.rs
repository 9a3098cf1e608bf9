//! Signed offers: what a provider advertises to the market, and the bounded soft-state book
//! in which other nodes keep them.
//!
//! A provider publishes an [`Offer`] (its capacity, its current asking price and where to dial
//! it) signed with its ed25519 identity key, under its commodity class: the class names the
//! DHT record ([`dht_key`]) and the gossip topic ([`topic`]) the offer travels on. Offers are
//! soft state: each carries a sequence number that grows with every publish and an expiry
//! at most [`MAX_OFFER_TTL_MS`] ahead, so a provider that stops renewing simply fades out of
//! every [`OfferBook`].
//!
//! Two byte forms exist. [`Offer::signing_bytes`] is what the provider signs: a domain string
//! followed by the fields in a fixed little-endian layout (no serde, so both sides agree on
//! every byte). [`SignedOffer::to_bytes`] is the gossip form: a version byte, the same field
//! layout, then the signature; decoding is strict (one encoding per offer, no trailing bytes)
//! and refuses anything over [`MAX_OFFER_BYTES`].

use crate::ask::{ProviderKey, verify_ed25519};
use naac_types::Price;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

const OFFER_DOMAIN: &str = "naac offer v1";
const WASM_CLASS: &str = "wasm32-wasip1";
const DHT_PREFIX: &str = "/naac/market/v1/";
const TOPIC_PREFIX: &str = "naac/market/v1/";

/// The version byte that starts [`SignedOffer::to_bytes`].
pub const OFFER_WIRE_VERSION: u8 = 1;
/// Largest gossip encoding of a signed offer; larger ones are refused both ways.
pub const MAX_OFFER_BYTES: usize = 4096;
/// Most dial addresses one offer may list.
pub const MAX_ADDRS: usize = 8;
/// Longest dial address, in bytes.
pub const MAX_ADDR_LEN: usize = 256;
/// Longest commodity class name, in bytes.
pub const MAX_CLASS_LEN: usize = 64;
/// Farthest ahead of the receiver's clock an offer may expire (10 minutes).
pub const MAX_OFFER_TTL_MS: u64 = 10 * 60 * 1000;
/// Length of an ed25519 signature.
const SIG_LEN: usize = 64;

/// The commodity class of every offer today: WebAssembly modules for `wasm32-wasip1` run
/// in naac's sandbox.
///
/// A class is what a requester shops for; it keys the market's DHT records ([`dht_key`]) and
/// names its gossip topics ([`topic`]), so providers of one class find requesters of the same
/// class and nobody else. Class names are short lowercase ASCII (letters, digits, `-`, `_`,
/// `.`).
pub fn commodity_class() -> &'static str {
    WASM_CLASS
}

/// The DHT key under which providers of `class` announce themselves:
/// `/naac/market/v1/<class>`.
pub fn dht_key(class: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(DHT_PREFIX.len() + class.len());
    k.extend_from_slice(DHT_PREFIX.as_bytes());
    k.extend_from_slice(class.as_bytes());
    k
}

/// The gossip topic on which offers of `class` are published: `naac/market/v1/<class>`.
pub fn topic(class: &str) -> String {
    format!("{TOPIC_PREFIX}{class}")
}

/// Why an offer was refused, by the decoder or by an [`OfferBook`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The signature is not the named provider's over this offer.
    #[error("offer signature does not verify")]
    BadSignature,
    /// The offer expired at or before the receiver's now.
    #[error("offer expired at {expires_ms} (now {now_ms})")]
    Expired { expires_ms: u64, now_ms: u64 },
    /// The offer expires more than [`MAX_OFFER_TTL_MS`] after the receiver's now.
    #[error("offer expires at {expires_ms}, more than 10 minutes ahead (limit {limit_ms})")]
    TooLong { expires_ms: u64, limit_ms: u64 },
    /// The class name is empty, too long, or has characters other than `a-z0-9-_.`.
    #[error("offer class \"{0}\" is not a valid commodity class name")]
    BadClass(String),
    /// The class is well formed but not one this book keeps.
    #[error("offer class \"{0}\" is not a known commodity class")]
    UnknownClass(String),
    /// More than [`MAX_ADDRS`] dial addresses.
    #[error("offer lists {0} addresses, more than 8")]
    TooManyAddrs(usize),
    /// A dial address longer than [`MAX_ADDR_LEN`] bytes.
    #[error("offer address of {0} bytes is longer than 256")]
    AddrTooLong(usize),
    /// More free slots than slots.
    #[error("offer has {free} free slots but only {slots} slots")]
    FreeSlots { free: u32, slots: u32 },
    /// Issued after it expires.
    #[error("offer issued at {issued_ms}, after it expires at {expires_ms}")]
    IssuedAfterExpiry { issued_ms: u64, expires_ms: u64 },
    /// The encoding would be, or is, larger than [`MAX_OFFER_BYTES`].
    #[error("offer encoding of {0} bytes is larger than 4096")]
    TooLarge(usize),
    /// The encoding starts with a version this code does not read.
    #[error("offer encoding version {0} is unknown")]
    Version(u8),
    /// The bytes are not a well-formed offer encoding.
    #[error("malformed offer bytes: {0}")]
    Malformed(&'static str),
}

/// What a provider offers the market, valid until `expires_ms` (Unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The provider's ed25519 public key; it signs the offer.
    pub provider: ProviderKey,
    /// Commodity class, e.g. [`commodity_class`].
    pub class: String,
    /// Logical cores the provider may use.
    pub cores: u32,
    /// Memory available for tasks, in bytes.
    pub memory: u64,
    /// Compute score (giga-fuel per second on one core) × 1000, as an integer.
    pub score_milli: u64,
    /// Tasks the provider runs at once.
    pub slots: u32,
    /// Of those, how many are free now.
    pub free_slots: u32,
    /// Current asking price: the owner's minimum times the current window's multiplier
    /// (see [`ask_price`](crate::ask_price)).
    pub price: Price,
    /// Largest memory limit a task may ask for, in bytes.
    pub max_task_memory: u64,
    /// Whether the provider takes work now (its owner's policy allows it).
    pub accepting: bool,
    /// Multiaddrs to dial: at most [`MAX_ADDRS`], each at most [`MAX_ADDR_LEN`] bytes.
    pub addrs: Vec<String>,
    /// Grows with each publish by this provider; a receiver keeps only the highest.
    pub seq: u64,
    /// When the provider issued the offer (Unix ms).
    pub issued_ms: u64,
    /// When the offer stops being valid (Unix ms).
    pub expires_ms: u64,
}

impl Offer {
    /// The exact bytes the provider signs: a domain string, then the fields in a fixed
    /// little-endian layout (strings and the address list are length-prefixed with `u32`).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(OFFER_DOMAIN.len() + self.body_len());
        b.extend_from_slice(OFFER_DOMAIN.as_bytes());
        self.put_body(&mut b);
        b
    }

    /// Signs the offer with `key`, setting `provider` to its public key first.
    pub fn sign(mut self, key: &ed25519_dalek::SigningKey) -> SignedOffer {
        use ed25519_dalek::Signer;
        self.provider = key.verifying_key().to_bytes();
        let sig = key.sign(&self.signing_bytes()).to_bytes().to_vec();
        SignedOffer { offer: self, sig }
    }

    /// Checks the structural limits every offer must respect: a well-formed class, at most
    /// [`MAX_ADDRS`] addresses of at most [`MAX_ADDR_LEN`] bytes, no more free slots than
    /// slots, and an issue time not after the expiry. Says nothing about the signature or
    /// the clock.
    pub fn validate(&self) -> Result<(), OfferError> {
        if !is_class_name(&self.class) {
            return Err(OfferError::BadClass(self.class.clone()));
        }
        if self.addrs.len() > MAX_ADDRS {
            return Err(OfferError::TooManyAddrs(self.addrs.len()));
        }
        if let Some(a) = self.addrs.iter().find(|a| a.len() > MAX_ADDR_LEN) {
            return Err(OfferError::AddrTooLong(a.len()));
        }
        if self.free_slots > self.slots {
            return Err(OfferError::FreeSlots {
                free: self.free_slots,
                slots: self.slots,
            });
        }
        if self.issued_ms > self.expires_ms {
            return Err(OfferError::IssuedAfterExpiry {
                issued_ms: self.issued_ms,
                expires_ms: self.expires_ms,
            });
        }
        Ok(())
    }

    /// Whether the offer has expired at `now_ms` (expiry is exclusive: an offer is live
    /// strictly before `expires_ms`).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms <= now_ms
    }

    fn body_len(&self) -> usize {
        32 + 4
            + self.class.len()
            + 4
            + 8
            + 8
            + 4
            + 4
            + 8
            + 8
            + 1
            + 4
            + self.addrs.iter().map(|a| 4 + a.len()).sum::<usize>()
            + 8
            + 8
            + 8
    }

    fn put_body(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.provider);
        put_bytes(b, self.class.as_bytes());
        b.extend_from_slice(&self.cores.to_le_bytes());
        b.extend_from_slice(&self.memory.to_le_bytes());
        b.extend_from_slice(&self.score_milli.to_le_bytes());
        b.extend_from_slice(&self.slots.to_le_bytes());
        b.extend_from_slice(&self.free_slots.to_le_bytes());
        b.extend_from_slice(&self.price.0.to_le_bytes());
        b.extend_from_slice(&self.max_task_memory.to_le_bytes());
        b.push(u8::from(self.accepting));
        put_len(b, self.addrs.len());
        for a in &self.addrs {
            put_bytes(b, a.as_bytes());
        }
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.issued_ms.to_le_bytes());
        b.extend_from_slice(&self.expires_ms.to_le_bytes());
    }

    fn read_body(r: &mut Reader<'_>) -> Result<Offer, OfferError> {
        let provider = r.array32()?;
        let class = r.string(
            MAX_CLASS_LEN,
            |_| OfferError::Malformed("class name longer than 64 bytes"),
            "class name is not utf-8",
        )?;
        let cores = r.u32()?;
        let memory = r.u64()?;
        let score_milli = r.u64()?;
        let slots = r.u32()?;
        let free_slots = r.u32()?;
        let price = Price(r.u64()?);
        let max_task_memory = r.u64()?;
        let accepting = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(OfferError::Malformed("accepting flag is neither 0 nor 1")),
        };
        let n = r.u32()? as usize;
        if n > MAX_ADDRS {
            return Err(OfferError::TooManyAddrs(n));
        }
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            addrs.push(r.string(
                MAX_ADDR_LEN,
                OfferError::AddrTooLong,
                "address is not utf-8",
            )?);
        }
        Ok(Offer {
            provider,
            class,
            cores,
            memory,
            score_milli,
            slots,
            free_slots,
            price,
            max_task_memory,
            accepting,
            addrs,
            seq: r.u64()?,
            issued_ms: r.u64()?,
            expires_ms: r.u64()?,
        })
    }
}

/// An offer with its provider's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOffer {
    pub offer: Offer,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

impl SignedOffer {
    /// Whether the signature is the named provider's over this offer (strict checking).
    pub fn verify(&self) -> bool {
        verify_ed25519(&self.offer.provider, &self.offer.signing_bytes(), &self.sig)
    }

    /// The gossip encoding: [`OFFER_WIRE_VERSION`], the offer's fields in the signing layout
    /// (without the domain string), then the signature length-prefixed with `u32`. Refuses
    /// an offer that fails [`Offer::validate`], a signature longer than 64 bytes, or an
    /// encoding over [`MAX_OFFER_BYTES`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, OfferError> {
        self.offer.validate()?;
        if self.sig.len() > SIG_LEN {
            return Err(OfferError::Malformed("signature longer than 64 bytes"));
        }
        let len = 1 + self.offer.body_len() + 4 + self.sig.len();
        if len > MAX_OFFER_BYTES {
            return Err(OfferError::TooLarge(len));
        }
        let mut b = Vec::with_capacity(len);
        b.push(OFFER_WIRE_VERSION);
        self.offer.put_body(&mut b);
        put_bytes(&mut b, &self.sig);
        Ok(b)
    }

    /// Decodes [`to_bytes`](Self::to_bytes) strictly: refuses more than [`MAX_OFFER_BYTES`]
    /// before reading anything, an unknown version, truncated or trailing bytes, and offers
    /// that fail [`Offer::validate`]. Does not check the signature ([`verify`](Self::verify)
    /// or [`OfferBook::insert`] does).
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedOffer, OfferError> {
        if bytes.len() > MAX_OFFER_BYTES {
            return Err(OfferError::TooLarge(bytes.len()));
        }
        let mut r = Reader { b: bytes };
        let v = r.u8()?;
        if v != OFFER_WIRE_VERSION {
            return Err(OfferError::Version(v));
        }
        let offer = Offer::read_body(&mut r)?;
        let sig = r
            .bytes(SIG_LEN, |_| {
                OfferError::Malformed("signature longer than 64 bytes")
            })?
            .to_vec();
        if !r.b.is_empty() {
            return Err(OfferError::Malformed("trailing bytes"));
        }
        offer.validate()?;
        Ok(SignedOffer { offer, sig })
    }
}

/// What [`OfferBook::insert`] did with an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The first offer kept from this provider.
    New,
    /// Replaced this provider's offer with one of a higher sequence number.
    Renewed,
    /// Not newer than the offer already kept (same or lower sequence number); the book is
    /// unchanged.
    Stale,
}

/// A bounded soft-state store of verified offers of the known commodity class, one per
/// provider (the one with the highest sequence number). It never holds more than its
/// capacity, and no one source fills it: offer keys are free, so each offer is charged to
/// what is not — the peer that delivered it (its *origin*, e.g. the gossip neighbour) and
/// the network of its first dial address (IPv4 /24, IPv6 /48, or the DNS name). Neither may
/// hold more than [`OfferBook::share`] offers: a newcomer over its origin's or its network's
/// share replaces that group's offer that expires soonest, so a flood churns only its own
/// share. A newcomer at a full book first clears expired offers, then evicts the
/// soonest-expiring offer of the largest group, so long-lived offers from one source cannot
/// push out everyone else's.
#[derive(Clone, Debug)]
pub struct OfferBook {
    capacity: usize,
    offers: BTreeMap<ProviderKey, Kept>,
    /// (expires_ms, provider) of every kept offer: expiry in order.
    by_expiry: BTreeSet<(u64, ProviderKey)>,
    /// The same, per origin and per network.
    groups: BTreeMap<Group, BTreeSet<(u64, ProviderKey)>>,
}

/// An offer in the book and the groups it is charged to.
#[derive(Clone, Debug)]
struct Kept {
    offer: SignedOffer,
    origin: Group,
    net: Group,
}

/// A group of offers that shares the book's fair share: one origin or one network.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Origin(Vec<u8>),
    Net(String),
}

/// Smallest fair share of a book, in offers (a small book is one share).
const MIN_SHARE: usize = 16;
/// Longest origin key kept, in bytes (a peer id is 38).
const MAX_ORIGIN_LEN: usize = 64;

impl OfferBook {
    /// An empty book that keeps at most `capacity` offers (at least one).
    pub fn new(capacity: usize) -> Self {
        OfferBook {
            capacity: capacity.max(1),
            offers: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            groups: BTreeMap::new(),
        }
    }

    /// Most offers the book keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Most offers one origin, or one network, may hold: an eighth of the capacity, at
    /// least 16 (and at most the capacity).
    pub fn share(&self) -> usize {
        (self.capacity / 8).max(MIN_SHARE).min(self.capacity)
    }

    /// Offers kept now, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    /// Whether the book holds no offer.
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// Offers kept now that came from `origin` (see [`insert_from`](Self::insert_from)).
    pub fn from_origin(&self, origin: &[u8]) -> usize {
        self.groups
            .get(&origin_group(origin))
            .map_or(0, BTreeSet::len)
    }

    /// [`insert_from`](Self::insert_from) with the provider itself as the origin (offers it
    /// handed over in person).
    pub fn insert(&mut self, o: SignedOffer, now_ms: u64) -> Result<Inserted, OfferError> {
        let origin = o.offer.provider;
        self.insert_from(o, now_ms, &origin)
    }

    /// Takes in an offer heard at `now_ms` from `origin` (who delivered it: for gossip, the
    /// neighbour that forwarded it; only its first 64 bytes count). Refuses offers that fail
    /// [`Offer::validate`], of a class other than [`commodity_class`], already expired,
    /// expiring more than [`MAX_OFFER_TTL_MS`] ahead, or whose signature does not verify. A
    /// verified offer with a sequence number not above the kept one's is
    /// [`Inserted::Stale`] and changes nothing (an exact copy of the kept offer is
    /// recognized without checking its signature again). A renewal is charged to the origin
    /// it came from.
    pub fn insert_from(
        &mut self,
        o: SignedOffer,
        now_ms: u64,
        origin: &[u8],
    ) -> Result<Inserted, OfferError> {
        o.offer.validate()?;
        if o.offer.class != commodity_class() {
            return Err(OfferError::UnknownClass(o.offer.class));
        }
        if o.offer.is_expired(now_ms) {
            return Err(OfferError::Expired {
                expires_ms: o.offer.expires_ms,
                now_ms,
            });
        }
        let limit_ms = now_ms.saturating_add(MAX_OFFER_TTL_MS);
        if o.offer.expires_ms > limit_ms {
            return Err(OfferError::TooLong {
                expires_ms: o.offer.expires_ms,
                limit_ms,
            });
        }
        let provider = o.offer.provider;
        let kept = self.offers.get(&provider);
        if kept.is_some_and(|k| k.offer == o) {
            return Ok(Inserted::Stale);
        }
        if !o.verify() {
            return Err(OfferError::BadSignature);
        }
        let origin = origin_group(origin);
        let net = Group::Net(net_of(&o.offer.addrs));
        let outcome = match kept {
            Some(k) if o.offer.seq <= k.offer.offer.seq => return Ok(Inserted::Stale),
            Some(_) => {
                self.remove(&provider);
                Inserted::Renewed
            }
            None => {
                if self.offers.len() >= self.capacity {
                    self.expire(now_ms);
                }
                self.make_room(&origin, &net);
                Inserted::New
            }
        };
        let key = (o.offer.expires_ms, provider);
        self.by_expiry.insert(key);
        self.groups.entry(origin.clone()).or_default().insert(key);
        self.groups.entry(net.clone()).or_default().insert(key);
        self.offers.insert(
            provider,
            Kept {
                offer: o,
                origin,
                net,
            },
        );
        Ok(outcome)
    }

    /// Frees a place for a new offer charged to `origin` and `net`: from the newcomer's own
    /// group when it holds its share already, else, at a full book, from the largest group.
    fn make_room(&mut self, origin: &Group, net: &Group) {
        let share = self.share();
        let count = |g: &Group| self.groups.get(g).map_or(0, BTreeSet::len);
        let group = if count(origin) >= share {
            Some(origin.clone())
        } else if count(net) >= share {
            Some(net.clone())
        } else if self.offers.len() >= self.capacity {
            self.groups
                .iter()
                .max_by_key(|(_, v)| v.len())
                .map(|(g, _)| g.clone())
        } else {
            None
        };
        let victim = group
            .and_then(|g| self.groups.get(&g))
            .and_then(|v| v.first())
            .map(|(_, p)| *p);
        if let Some(p) = victim {
            self.remove(&p);
        }
    }

    /// Drops every offer expired at `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut n = 0;
        while let Some(&(exp, p)) = self.by_expiry.first() {
            if exp > now_ms {
                break;
            }
            self.remove(&p);
            n += 1;
        }
        n
    }

    /// Forgets a provider's offer (e.g. it was found unreachable); returns it if kept.
    pub fn remove(&mut self, provider: &ProviderKey) -> Option<SignedOffer> {
        let k = self.offers.remove(provider)?;
        let key = (k.offer.offer.expires_ms, *provider);
        self.by_expiry.remove(&key);
        for g in [k.origin, k.net] {
            if let Some(set) = self.groups.get_mut(&g) {
                set.remove(&key);
                if set.is_empty() {
                    self.groups.remove(&g);
                }
            }
        }
        Some(k.offer)
    }

    /// The offer kept from `provider`, expired or not.
    pub fn get(&self, provider: &ProviderKey) -> Option<&SignedOffer> {
        self.offers.get(provider).map(|k| &k.offer)
    }

    /// Every kept offer, expired ones not yet dropped included, in provider order.
    pub fn iter(&self) -> impl Iterator<Item = &SignedOffer> + '_ {
        self.offers.values().map(|k| &k.offer)
    }

    /// The unexpired offers of `class` at `now_ms`, cheapest first (ties by provider key).
    /// Offers not accepting work or without free slots are included; filtering them is the
    /// caller's choice.
    pub fn live(&self, class: &str, now_ms: u64) -> Vec<&SignedOffer> {
        let mut v: Vec<&SignedOffer> = self
            .iter()
            .filter(|o| o.offer.class == class && !o.offer.is_expired(now_ms))
            .collect();
        v.sort_by(|a, b| {
            (a.offer.price, &a.offer.provider).cmp(&(b.offer.price, &b.offer.provider))
        });
        v
    }
}

fn origin_group(origin: &[u8]) -> Group {
    Group::Origin(origin[..origin.len().min(MAX_ORIGIN_LEN)].to_vec())
}

/// The network an offer's first dial address is in: `/ip4/` its /24, `/ip6/` its /48,
/// `/dns…/` the name; anything else is one network of its own kind.
fn net_of(addrs: &[String]) -> String {
    let Some(a) = addrs.first() else {
        return "none".into();
    };
    let mut parts = a.split('/').skip(1);
    let (proto, host) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match proto {
        "ip4" => match host.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => {
                let [a, b, c, _] = ip.octets();
                format!("ip4 {a}.{b}.{c}.0/24")
            }
            Err(_) => "ip4 ?".into(),
        },
        "ip6" => match host.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => {
                let s = ip.segments();
                format!("ip6 {:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
            Err(_) => "ip6 ?".into(),
        },
        "dns" | "dns4" | "dns6" | "dnsaddr" => format!("dns {}", host.to_ascii_lowercase()),
        other => other.chars().take(16).collect(),
    }
}

fn is_class_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLASS_LEN
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        })
}

fn put_len(b: &mut Vec<u8>, n: usize) {
    // Lengths are bounded by `Offer::validate` long before `u32::MAX`; saturate rather than
    // wrap if an unvalidated offer is ever signed.
    b.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_bytes(b: &mut Vec<u8>, bytes: &[u8]) {
    put_len(b, bytes.len());
    b.extend_from_slice(bytes);
}

/// A cursor over the gossip encoding.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], OfferError> {
        if self.b.len() < n {
            return Err(OfferError::Malformed("truncated"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], OfferError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn array32(&mut self) -> Result<[u8; 32], OfferError> {
        self.array::<32>()
    }

    fn u8(&mut self) -> Result<u8, OfferError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, OfferError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, OfferError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Length-prefixed bytes of at most `max`; `too_long` makes the error for a longer one.
    fn bytes(
        &mut self,
        max: usize,
        too_long: impl FnOnce(usize) -> OfferError,
    ) -> Result<&'a [u8], OfferError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(too_long(n));
        }
        self.take(n)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    fn string(
        &mut self,
        max: usize,
        too_long: impl FnOnce(usize) -> OfferError,
        not_utf8: &'static str,
    ) -> Result<String, OfferError> {
        let b = self.bytes(max, too_long)?;
        String::from_utf8(b.to_vec()).map_err(|_| OfferError::Malformed(not_utf8))
    }
}
