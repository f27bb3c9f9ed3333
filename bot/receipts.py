"""Verifiable receipts: what anyone can check with nothing but a record, a proof and our public key.

- A record (a score or a signal of one cycle) is hashed as SHA-256 of its canonical JSON (RFC 8785, the
  `rfc8785` package): the same record always gives the same bytes, whatever produced it.
- A cycle's records are sealed into a Merkle tree with RFC 6962 hashing (leaf = SHA-256(0x00 || record),
  node = SHA-256(0x01 || left || right)); an inclusion proof shows one record is in a root.
- Each cycle's manifest {cycle_ts, root, count, prev} (prev: the previous manifest's hash, so the
  manifests form a chain) is signed with Ed25519 (`cryptography`). Anyone holding the public key can
  verify a manifest; once a signed root has left our hands, no later edit of our database goes unnoticed.

Pure functions, no I/O; the key's storage lives with the composition root.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

EMPTY_ROOT = hashlib.sha256(b"").digest()


# ------------------------------------------------------------------------------------------- records
def canonical(record: Any) -> bytes:
    """RFC 8785 canonical JSON (sorted keys, no spaces, ECMAScript number form). NaN/Infinity are refused."""
    return rfc8785.dumps(record)


def record_hash(record: Any) -> str:
    """A record's receipt hash: SHA-256 of its canonical JSON, hex."""
    return hashlib.sha256(canonical(record)).hexdigest()


# ------------------------------------------------------------------------------------------- RFC 6962 Merkle trees
def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (RFC 6962 §2.1); the empty tree's root is SHA-256 of nothing."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, leaves) (RFC 6962 §2.1.1): the sibling hashes from the leaf up to the root."""
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf {index} is not in a tree of {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return inclusion_proof(index, leaves[:k]) + [merkle_root(leaves[k:])]
    return inclusion_proof(index - k, leaves[k:]) + [merkle_root(leaves[:k])]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """Does `proof` show leaf hash `leaf` at `index` in a tree of `size` with this root? (RFC 9162 §2.1.3.2)"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# ------------------------------------------------------------------------------------------- signed manifests
def manifest(cycle_ts: int, root: bytes, count: int, prev: str | None) -> dict:
    """What a cycle's seal says: when, which root over how many records, and the previous manifest's hash."""
    return {"cycle_ts": cycle_ts, "root": root.hex(), "count": count, "prev": prev}


def sign(record: Any, key: Ed25519PrivateKey) -> str:
    return key.sign(canonical(record)).hex()


def verify_signature(record: Any, signature: str, public_key: str) -> bool:
    """Does `signature` (hex) over the canonical JSON of `record` verify with `public_key` (raw, hex)?"""
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(bytes.fromhex(signature),
                                                                            canonical(record))
        return True
    except (InvalidSignature, ValueError):
        return False


def public_key_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
