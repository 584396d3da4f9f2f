"""Frozen lower layers computed once and replayed (``model.cache_frozen``)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from conftest import tiny_transformer_overrides, train_run  # noqa: E402
from tiny_backbone import tiny_gemma  # noqa: E402

from topictone.infer.errors import TopictoneError  # noqa: E402


def tiny_bert(tiny_backbone) -> torch.nn.Module:
    from transformers import AutoModel

    from topictone.infer.predictors.network import without_pooler

    torch.manual_seed(0)
    return without_pooler(AutoModel.from_pretrained, tiny_backbone)


WINDOWS = [[2, 5, 9, 11, 3, 7, 8, 20, 13, 4], [2, 6, 3], [2, 30, 31, 32, 33, 3]]


def loss_and_grads(model, batch, frozen=None, states=None):
    from contextlib import nullcontext

    model.zero_grad()
    with nullcontext() if states is None else frozen.replay(states):
        loss = model(**batch)["loss"]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


@pytest.mark.parametrize("backbone", ["bert", "gemma"])
def test_replayed_layers_give_the_same_loss_and_gradients(backbone, tiny_backbone):
    from topictone.infer.predictors.network import TopicToneModel, collate_windows
    from topictone.train.fitters.frozen_cache import FrozenLayers
    from topictone.train.fitters.transformer import encoder_layers, freeze_bottom_layers

    encoder = tiny_gemma() if backbone == "gemma" else tiny_bert(tiny_backbone)
    encoder.get_input_embeddings().weight.requires_grad_(False)
    count = 3 if backbone == "gemma" else 1
    freeze_bottom_layers(encoder, count, embeddings_frozen=True)
    model = TopicToneModel(encoder, 3, 3).eval()  # eval: no dropout on either path
    batch = collate_windows([[w] for w in WINDOWS], pad_id=0)
    batch |= {
        "topic_labels": torch.tensor([[1.0, 0, 1], [0, 0, 0], [0, 1, 0]]),
        "tone_labels": torch.tensor([0, 1, 2]),
    }
    frozen = FrozenLayers(encoder, encoder_layers(encoder), count)
    autocast = torch.autocast("cpu", enabled=False)
    frozen.check(WINDOWS, 0, autocast)
    frozen.fill(WINDOWS, 0, batch_size=2, autocast=autocast, progress=False)
    assert [len(s) for s in frozen.states] == [len(w) for w in WINDOWS]
    states = frozen.padded([0, 1, 2], [len(w) for w in WINDOWS])
    with pytest.raises(TopictoneError, match="stored windows of"):
        frozen.padded([1, 0, 2], [len(w) for w in WINDOWS])

    loss, grads = loss_and_grads(model, batch)
    replayed_loss, replayed_grads = loss_and_grads(model, batch, frozen, states)
    assert replayed_loss.item() == pytest.approx(loss.item(), rel=1e-5)
    assert grads.keys() == replayed_grads.keys() and any("encoder" in n for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(replayed_grads[name], grad, rtol=1e-4, atol=1e-6)
    # Outside replay the encoder is whole again: its own layers, its own embeddings.
    assert all(type(layer).__name__ != "_PassThrough" for layer in encoder_layers(encoder))
    assert model(**batch)["loss"].item() == pytest.approx(loss.item(), rel=1e-6)


def test_a_backbone_that_cannot_be_replayed_is_refused(monkeypatch):
    from topictone.train.fitters.frozen_cache import FrozenLayers
    from topictone.train.fitters.transformer import encoder_layers

    encoder = tiny_gemma()
    frozen = FrozenLayers(encoder, encoder_layers(encoder), 2)
    real_lower = FrozenLayers.lower
    monkeypatch.setattr(FrozenLayers, "lower", lambda self, *a: real_lower(self, *a) * 1.01)
    with pytest.raises(TopictoneError, match=r"cache_frozen: replaying .* differs"):
        frozen.check(WINDOWS, 0, torch.autocast("cpu", enabled=False))


def test_training_with_cached_frozen_layers(tiny_backbone, tmp_path):
    """Per-epoch dev batches run the whole network; the saved model is the whole network,
    its frozen layer untouched and its top layer trained."""
    from safetensors.torch import load_file

    overrides = [
        *tiny_transformer_overrides(tiny_backbone),
        "model.freeze_layers=1",
        "model.cache_frozen=true",
        "model.epochs=2",
    ]
    metrics = train_run(overrides, tmp_path)
    assert "dev" in metrics
    history = json.loads((tmp_path / "history.json").read_text())
    assert sum("eval_macro_f1" in h for h in history) == 2
    saved = load_file(tmp_path / "model" / "model.safetensors")
    initial = load_file(tiny_backbone / "model.safetensors")
    layer = "encoder.layer.{}.attention.self.query.weight"
    key = next(k for k in saved if k.endswith(layer.format(0)))
    torch.testing.assert_close(saved[key], initial[layer.format(0)])
    top = key.replace("layer.0.", "layer.1.")
    assert not torch.equal(saved[top], initial[layer.format(1)])


def test_caching_needs_frozen_layers(tiny_backbone, tmp_path, cli):
    overrides = [*tiny_transformer_overrides(tiny_backbone), "model.cache_frozen=true"]
    result = cli("train", *overrides, f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: model.cache_frozen needs")


def test_an_output_that_would_not_fit_in_memory_is_refused(monkeypatch):
    from topictone.train.fitters import frozen_cache
    from topictone.train.fitters.frozen_cache import FrozenLayers
    from topictone.train.fitters.transformer import encoder_layers

    encoder = tiny_gemma()
    frozen = FrozenLayers(encoder, encoder_layers(encoder), 2)
    needed = sum(map(len, WINDOWS)) * 16 * 4
    monkeypatch.setattr(frozen_cache, "free_memory", lambda: 2 * needed - 2)
    with pytest.raises(TopictoneError, match=r"would take 0\.0 GiB, more than half"):
        frozen.fill(WINDOWS, 0, 2, torch.autocast("cpu", enabled=False), progress=False)
    monkeypatch.setattr(frozen_cache, "free_memory", lambda: 2 * needed)
    frozen.fill(WINDOWS, 0, 2, torch.autocast("cpu", enabled=False), progress=False)


@pytest.mark.parametrize("bf16", [False, True])
def test_the_frozen_output_kept_on_disk_is_read_back_as_computed(bf16, tmp_path):
    from topictone.train.fitters.frozen_cache import FrozenLayers, FrozenStore
    from topictone.train.fitters.transformer import encoder_layers

    encoder = tiny_gemma()
    backbone = tmp_path / "backbone"  # the store's identity: the backbone folder's files
    backbone.mkdir()
    (backbone / "config.json").write_text("{}")
    autocast = torch.autocast("cpu", torch.bfloat16, enabled=bf16)
    frozen = FrozenLayers(encoder, encoder_layers(encoder), 2)
    dtype = frozen.check(WINDOWS, 0, autocast)  # Gemma's residual stream stays float32
    computed = "cpu/bfloat16" if bf16 else "cpu/float32"

    def filled(windows, store):
        layers = FrozenLayers(encoder, encoder_layers(encoder), 2)
        return layers.fill(windows, 0, 2, autocast, progress=False, store=store)

    def at(folder=str(backbone), count=2, how=computed):
        return FrozenStore.at(tmp_path / "cache", folder, count, how, dtype, 16)

    store = at()
    first = filled(WINDOWS, store)
    assert first.from_store == 0 and store.path.is_file()
    again = filled(WINDOWS, at())
    assert again.from_store == len(WINDOWS)
    for fresh, read in zip(first.states, again.states, strict=True):
        assert read.dtype == dtype and torch.equal(read, fresh)
    # A new window is computed and joins the store; a stored one of the wrong size is
    # computed again.
    store.cache.store({FrozenStore.key(WINDOWS[1]): b"\0" * 8})
    more = filled([*WINDOWS, [2, 40, 41, 3]], store)
    assert more.from_store == len(WINDOWS) - 1
    assert torch.equal(more.states[1], first.states[1])
    assert filled([[2, 40, 41, 3]], store).from_store == 1
    # Other layers, another precision (with the same dtype out), a changed folder: another
    # store; a hub name: none.
    assert at(count=1).path != store.path
    assert at(how="cpu/float32" if bf16 else "cpu/bfloat16").path != store.path
    (backbone / "config.json").write_text('{"changed": true}')
    assert at().path != store.path
    assert at(folder="org/hub-name") is None


def test_bfloat16_states_are_stored_bit_for_bit(tmp_path):
    from topictone.train.fitters.frozen_cache import FrozenStore

    store = FrozenStore(tmp_path / "frozen.sqlite", torch.bfloat16, 4)
    windows = [[2, 7, 3], [2, 8, 3], [2, 9, 9, 3]]
    states = {0: torch.randn(3, 4).to(torch.bfloat16), 2: torch.randn(4, 4).to(torch.bfloat16)}
    store.write(windows, states, chunk=1)  # one window a transaction
    read = store.read(windows, chunk=2)  # two lookups
    assert list(read) == [0, 2] and all(read[i].dtype == torch.bfloat16 for i in read)
    assert all(torch.equal(read[i], states[i]) for i in states)


def test_a_rerun_reads_the_frozen_output_and_trains_the_same_model(tiny_backbone, tmp_path, capsys):
    import re

    from safetensors.torch import load_file

    overrides = [
        *tiny_transformer_overrides(tiny_backbone),
        "model.freeze_layers=1",
        "model.cache_frozen=true",
        "model.cache_frozen_on_disk=true",
        f"model.cache_dir={tmp_path / 'cache'}",
    ]
    read = re.compile(r"output of (\d+) training windows .*, (\d+) of them read from")
    first = train_run(overrides, tmp_path / "first")
    windows, stored = map(int, read.search(capsys.readouterr().err).groups())
    assert windows > 0 and stored == 0
    again = train_run(overrides, tmp_path / "again")
    assert read.search(capsys.readouterr().err).groups() == (str(windows), str(windows))
    assert again["dev"] == first["dev"]
    saved, rerun = (load_file(tmp_path / r / "model/model.safetensors") for r in ("first", "again"))
    assert saved.keys() == rerun.keys()
    assert all(torch.equal(saved[k], rerun[k]) for k in saved)
