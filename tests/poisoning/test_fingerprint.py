"""Dataset fingerprints: order independence, inclusion and exclusion proofs, tamper detection."""

from __future__ import annotations

import pytest
import torch

from hoplon.core.errors import InputError
from hoplon.data import Dataset, DatasetFingerprint, fingerprint, prove_membership


def test_order_independent_root_ignores_order_only(train_set: Dataset) -> None:
    shuffled = train_set.subset(torch.randperm(train_set.n, generator=torch.Generator().manual_seed(0)))
    assert fingerprint(train_set, order_independent=True).root == fingerprint(shuffled, order_independent=True).root
    assert fingerprint(train_set).root != fingerprint(shuffled).root
    flipped = train_set.subset(slice(None))
    y = flipped.y.clone()
    y[0] = (y[0] + 1) % 10
    changed = Dataset(x=flipped.x, y=y, bounds=flipped.bounds, name="x", kind="image")
    assert not fingerprint(train_set, order_independent=True).matches(changed)


@pytest.mark.parametrize("order_independent", [True, False])
def test_member_has_a_verified_inclusion_proof(train_set: Dataset, order_independent: bool) -> None:
    fp = fingerprint(train_set.subset(slice(0, 300)), order_independent=order_independent)
    proof = prove_membership(fp, train_set.x[17], int(train_set.y[17]))
    assert proof.member and proof.verify()


def test_non_member_has_a_verified_exclusion_proof(train_set: Dataset, test_set: Dataset) -> None:
    fp = fingerprint(train_set.subset(slice(0, 300)), order_independent=True)
    proof = prove_membership(fp, test_set.x[0], int(test_set.y[0]))
    assert not proof.member and proof.verify()
    # A proof whose bracket is not adjacent (a leaf dropped from between) must not verify.
    forged = type(proof)(
        False,
        proof.leaf,
        proof.root,
        proof.tree_size,
        (proof.proofs[0], (proof.proofs[0][0] + 2, *proof.proofs[-1][1:])),
    )
    assert not forged.verify()


def test_altered_fingerprint_file_is_refused(train_set: Dataset, tmp_path: pytest.TempPathFactory) -> None:
    fp = fingerprint(train_set.subset(slice(0, 50)), order_independent=True)
    data = fp.to_dict()
    data["leaves"][3] = "00" * 32
    with pytest.raises(InputError, match="altered"):
        DatasetFingerprint.from_dict(data)
