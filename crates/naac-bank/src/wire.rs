//! Conversions between the ledger's and the market's values and their wire counterparts in
//! `naac-proto`: the one place that knows both. Every wire value maps to exactly one
//! domain value (same fields, same types), so both directions are infallible; the wire
//! types keep the same serde shape, so the bytes on the wire are the domain values' CBOR
//! (the tests below compare them).
//!
//! Besides the traits, two helpers for the ask a provider bids with: [`ask_bid`] puts a
//! market ask on the wire, [`AskCheck`] checks one that came off it by the market's rules.

use naac_ledger as l;
use naac_market as m;
use naac_proto as w;

/// A domain value that has a wire counterpart.
pub trait ToWire {
    type Wire;
    fn into_wire(self) -> Self::Wire;
}

/// A domain value made from its wire counterpart.
pub trait FromWire<W>: Sized {
    fn from_wire(w: W) -> Self;
}

/// Conversions of the plain data both sides share field by field.
macro_rules! mirror {
    ($dom:ty, $wire:ty, |$v:ident| $to:expr, |$u:ident| $from:expr) => {
        impl ToWire for $dom {
            type Wire = $wire;
            fn into_wire(self) -> $wire {
                let $v = self;
                $to
            }
        }
        impl FromWire<$wire> for $dom {
            fn from_wire($u: $wire) -> Self {
                $from
            }
        }
    };
}

mirror!(l::AccountKey, w::AccountKey, |k| w::AccountKey(k.0), |k| {
    l::AccountKey(k.0)
});

mirror!(
    l::Account,
    w::Account,
    |a| match a {
        l::Account::Mint => w::Account::Mint,
        l::Account::User(k) => w::Account::User(k.into_wire()),
        l::Account::Escrow(j) => w::Account::Escrow(j),
    },
    |a| match a {
        w::Account::Mint => l::Account::Mint,
        w::Account::User(k) => l::Account::User(l::AccountKey::from_wire(k)),
        w::Account::Escrow(j) => l::Account::Escrow(j),
    }
);

mirror!(
    l::Kind,
    w::Kind,
    |k| match k {
        l::Kind::Grant => w::Kind::Grant,
        l::Kind::Transfer => w::Kind::Transfer,
        l::Kind::Escrow => w::Kind::Escrow,
        l::Kind::Settle => w::Kind::Settle,
        l::Kind::Refund => w::Kind::Refund,
        l::Kind::Register => w::Kind::Register,
        l::Kind::Claim => w::Kind::Claim,
        l::Kind::Reject => w::Kind::Reject,
        l::Kind::Close => w::Kind::Close,
        l::Kind::Commit => w::Kind::Commit,
        l::Kind::Storage => w::Kind::Storage,
    },
    |k| match k {
        w::Kind::Grant => l::Kind::Grant,
        w::Kind::Transfer => l::Kind::Transfer,
        w::Kind::Escrow => l::Kind::Escrow,
        w::Kind::Settle => l::Kind::Settle,
        w::Kind::Refund => l::Kind::Refund,
        w::Kind::Register => l::Kind::Register,
        w::Kind::Claim => l::Kind::Claim,
        w::Kind::Reject => l::Kind::Reject,
        w::Kind::Close => l::Kind::Close,
        w::Kind::Commit => l::Kind::Commit,
        w::Kind::Storage => l::Kind::Storage,
    }
);

mirror!(
    l::Entry,
    w::Entry,
    |e| w::Entry {
        seq: e.seq,
        prev: e.prev,
        time_ms: e.time_ms,
        kind: e.kind.into_wire(),
        debit: e.debit.into_wire(),
        credit: e.credit.into_wire(),
        amount: e.amount,
        job: e.job,
        task: e.task,
        record: e.record,
        memo: e.memo,
        authorizer: e.authorizer.into_wire(),
        auth: e.auth,
        sig: e.sig,
    },
    |e| l::Entry {
        seq: e.seq,
        prev: e.prev,
        time_ms: e.time_ms,
        kind: l::Kind::from_wire(e.kind),
        debit: l::Account::from_wire(e.debit),
        credit: l::Account::from_wire(e.credit),
        amount: e.amount,
        job: e.job,
        task: e.task,
        record: e.record,
        memo: e.memo,
        authorizer: l::AccountKey::from_wire(e.authorizer),
        auth: e.auth,
        sig: e.sig,
    }
);

mirror!(
    l::TreeHead,
    w::TreeHead,
    |c| w::TreeHead {
        size: c.size,
        root: c.root,
        head: c.head,
        time_ms: c.time_ms,
        bank: c.bank.into_wire(),
        sig: c.sig,
    },
    |c| l::TreeHead {
        size: c.size,
        root: c.root,
        head: c.head,
        time_ms: c.time_ms,
        bank: l::AccountKey::from_wire(c.bank),
        sig: c.sig,
    }
);

mirror!(
    l::InclusionProof,
    w::InclusionProof,
    |p| w::InclusionProof {
        seq: p.seq,
        size: p.size,
        leaf: p.leaf,
        path: p.path,
    },
    |p| l::InclusionProof {
        seq: p.seq,
        size: p.size,
        leaf: p.leaf,
        path: p.path,
    }
);

mirror!(
    l::SignedRequest,
    w::SignedRequest,
    |r| w::SignedRequest {
        authorizer: r.authorizer.into_wire(),
        msg: r.msg,
        sig: r.sig,
    },
    |r| l::SignedRequest {
        authorizer: l::AccountKey::from_wire(r.authorizer),
        msg: r.msg,
        sig: r.sig,
    }
);

mirror!(
    m::Ask,
    w::Ask,
    |a| w::Ask {
        job: a.job,
        provider: a.provider,
        price: a.price,
        expires_ms: a.expires_ms,
    },
    |a| m::Ask {
        job: a.job,
        provider: a.provider,
        price: a.price,
        expires_ms: a.expires_ms,
    }
);

mirror!(
    m::SignedAsk,
    w::SignedAsk,
    |s| w::SignedAsk {
        ask: s.ask.into_wire(),
        sig: s.sig,
    },
    |s| m::SignedAsk {
        ask: m::Ask::from_wire(s.ask),
        sig: s.sig,
    }
);

impl<T: ToWire> ToWire for Option<T> {
    type Wire = Option<T::Wire>;
    fn into_wire(self) -> Self::Wire {
        self.map(ToWire::into_wire)
    }
}

impl<W, T: FromWire<W>> FromWire<Option<W>> for Option<T> {
    fn from_wire(w: Option<W>) -> Self {
        w.map(T::from_wire)
    }
}

impl<T: ToWire> ToWire for Vec<T> {
    type Wire = Vec<T::Wire>;
    fn into_wire(self) -> Self::Wire {
        self.into_iter().map(ToWire::into_wire).collect()
    }
}

impl<W, T: FromWire<W>> FromWire<Vec<W>> for Vec<T> {
    fn from_wire(w: Vec<W>) -> Self {
        w.into_iter().map(T::from_wire).collect()
    }
}

/// A provider's bid with its signed ask, for the wire.
pub fn ask_bid(ask: m::SignedAsk) -> w::Bid {
    w::Bid::Ask(ask.into_wire())
}

/// The market's checks of an ask that came off the wire.
pub trait AskCheck {
    /// Whether the signature is the named provider's over this ask
    /// ([`naac_market::SignedAsk::verify`]).
    fn verify(&self) -> bool;
}

impl AskCheck for w::SignedAsk {
    fn verify(&self) -> bool {
        m::SignedAsk::from_wire(self.clone()).verify()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use naac_types::{Credits, JobId, Price};
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use std::fmt::Debug;

    fn cbor(v: &impl Serialize) -> Vec<u8> {
        cbor4ii::serde::to_vec(Vec::new(), v).unwrap()
    }

    /// The domain value and its wire counterpart encode to the same bytes, each decodes
    /// the other's bytes, and the round trip gives the value back.
    fn same_bytes<D, W>(d: D)
    where
        D: ToWire<Wire = W>
            + FromWire<W>
            + Serialize
            + DeserializeOwned
            + Clone
            + PartialEq
            + Debug,
        W: Serialize + DeserializeOwned + Debug,
    {
        let w = d.clone().into_wire();
        let (db, wb) = (cbor(&d), cbor(&w));
        assert_eq!(db, wb, "{d:?}");
        assert_eq!(format!("{d:?}"), format!("{w:?}"), "Debug output");
        let back: D = cbor4ii::serde::from_slice(&wb).unwrap();
        assert_eq!(back, d);
        let w2: W = cbor4ii::serde::from_slice(&db).unwrap();
        assert_eq!(D::from_wire(w2), d);
    }

    fn entry(kind: l::Kind, debit: l::Account, credit: l::Account) -> l::Entry {
        l::Entry {
            seq: 7,
            prev: [3; 32],
            time_ms: 1_700_000_000_000,
            kind,
            debit,
            credit,
            amount: Credits(12_345),
            job: Some(JobId([9; 16])),
            task: Some(4),
            record: Some([5; 32]),
            memo: "a memo".into(),
            authorizer: l::AccountKey([1; 32]),
            auth: vec![0, 1, 2, 255],
            sig: vec![7; 64],
        }
    }

    #[test]
    fn every_wire_type_encodes_like_its_domain_value() {
        let user = l::Account::User(l::AccountKey([2; 32]));
        let escrow = l::Account::Escrow(JobId([8; 16]));
        same_bytes(l::AccountKey([0xab; 32]));
        for a in [l::Account::Mint, user, escrow] {
            same_bytes(a);
        }
        for k in [
            l::Kind::Grant,
            l::Kind::Transfer,
            l::Kind::Escrow,
            l::Kind::Settle,
            l::Kind::Refund,
            l::Kind::Register,
            l::Kind::Claim,
            l::Kind::Reject,
            l::Kind::Close,
            l::Kind::Commit,
            l::Kind::Storage,
        ] {
            same_bytes(k);
        }
        same_bytes(entry(l::Kind::Settle, escrow, user));
        same_bytes(l::Entry {
            job: None,
            task: None,
            record: None,
            memo: String::new(),
            auth: Vec::new(),
            ..entry(l::Kind::Grant, l::Account::Mint, user)
        });
        same_bytes(l::TreeHead {
            size: 10,
            root: [1; 32],
            head: [2; 32],
            time_ms: 99,
            bank: l::AccountKey([4; 32]),
            sig: vec![6; 64],
        });
        same_bytes(l::InclusionProof {
            seq: 3,
            size: 10,
            leaf: [1; 32],
            path: vec![[2; 32], [3; 32]],
        });
        same_bytes(l::SignedRequest {
            authorizer: l::AccountKey([1; 32]),
            msg: b"naac bank request v1\0...".to_vec(),
            sig: vec![9; 64],
        });
        let ask = m::Ask {
            job: JobId([1; 16]),
            provider: [2; 32],
            price: Price(1_500_000),
            expires_ms: 42,
        };
        same_bytes(ask.clone());
        same_bytes(m::SignedAsk {
            ask,
            sig: vec![3; 64],
        });
        same_bytes(Some(l::AccountKey([1; 32])));
        same_bytes(None::<l::TreeHead>);
        same_bytes(vec![entry(l::Kind::Refund, escrow, user)]);
    }
}
