"""Receipts anyone can verify: RFC 8785 canonical JSON, RFC 6962 Merkle roots and inclusion proofs (the
published test vectors), Ed25519-signed manifests; any tampering fails verification."""
from __future__ import annotations

import math

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, strategies as st

from bot.receipts import (EMPTY_ROOT, canonical, inclusion_proof, leaf_hash, manifest, merkle_root, public_key_hex,
                          record_hash, sign, verify_inclusion, verify_signature)

# RFC 6962 test data (the Certificate Transparency reference leaves and tree heads, sizes 0..8)
LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f")]
ROOTS = ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
         "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
         "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
         "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
         "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
         "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
         "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
         "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
         "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
PROOFS = {  # (leaf index, tree size) -> audit path
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
}
HASHES = [leaf_hash(x) for x in LEAVES]


def test_tree_heads_match_rfc6962_for_every_size():
    assert EMPTY_ROOT.hex() == ROOTS[0]
    for n in range(len(LEAVES) + 1):
        assert merkle_root(HASHES[:n]).hex() == ROOTS[n], n


def test_inclusion_proofs_match_the_published_paths_and_verify():
    for (index, size), path in PROOFS.items():
        proof = inclusion_proof(index, HASHES[:size])
        assert [p.hex() for p in proof] == path
        assert verify_inclusion(index, size, HASHES[index], proof, bytes.fromhex(ROOTS[size]))


@given(st.lists(st.binary(max_size=12), min_size=1, max_size=40), st.data())
def test_every_leaf_proves_and_nothing_else_does(records, data):
    leaves = [leaf_hash(r) for r in records]
    root = merkle_root(leaves)
    i = data.draw(st.integers(0, len(leaves) - 1))
    proof = inclusion_proof(i, leaves)
    assert verify_inclusion(i, len(leaves), leaves[i], proof, root)
    assert not verify_inclusion(i, len(leaves), leaf_hash(records[i] + b"!"), proof, root)     # edited record
    other = merkle_root(leaves + [leaf_hash(b"later")])
    assert not verify_inclusion(i, len(leaves), leaves[i], proof, other)                       # another root
    # (the tree size is not bound by a proof alone: it is part of the signed manifest)


def test_canonical_json_is_rfc8785():
    assert canonical({"b": 1, "a": [1.0, 2.5, "é"], "c": None}) == '{"a":[1,2.5,"é"],"b":1,"c":null}'.encode()
    assert canonical({"n": 1e30, "m": -0.0, "s": 1e-7}) == b'{"m":0,"n":1e+30,"s":1e-7}'
    assert record_hash({"x": 1, "y": 2}) == record_hash({"y": 2, "x": 1.0})
    with pytest.raises(Exception):
        canonical({"bad": math.nan})


def test_signed_manifest_chain_and_tampering():
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    pub = public_key_hex(key)
    first = manifest(1_800_000_000_000, merkle_root(HASHES[:5]), 5, None)
    second = manifest(1_800_000_300_000, merkle_root(HASHES), 8, record_hash(first))
    for m in (first, second):
        assert verify_signature(m, sign(m, key), pub)
    sig = sign(second, key)
    assert not verify_signature(dict(second, count=7), sig, pub)                  # edited count
    assert not verify_signature(dict(second, prev=record_hash(dict(first, count=4))), sig, pub)   # rewritten past
    assert not verify_signature(second, sig, public_key_hex(Ed25519PrivateKey.generate()))        # other key
    assert not verify_signature(second, "00" * 64, pub) and not verify_signature(second, "zz", pub)
