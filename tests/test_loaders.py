"""Loaders on fixture files in the exact public formats, the per-user split, the tokenizer, and
one-line ``InputError``s naming the file for every kind of bad input.

Expected values are recomputed here from the raw fixture files with the standard library, never
copied from the loaders' output.
"""

import csv
import gzip
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idfree_core.data import (Corpus, Tokenizer, load_amazon, load_corpus, load_csv, load_jsonl,
                              load_leaf_reddit, load_sentiment140, split_per_user)
from idfree_core.errors import InputError

FIX = Path(__file__).parent / "fixtures"
S140 = FIX / "sentiment140_sample.csv"
AMZ18 = FIX / "amazon_2018_sample.jsonl"
AMZ23 = FIX / "amazon_2023_sample.jsonl"
LEAF = FIX / "leaf_reddit_sample.json"
GCSV = FIX / "generic.csv"
GJSONL = FIX / "generic.jsonl"


def _check_split(corpus: Corpus, raw: dict[str, list[tuple[float, str, object]]]):
    """Every kept user's documents are partitioned; train precedes test in time; 80/20 sizes."""
    for u in corpus.users:
        docs = sorted(raw[u], key=lambda r: r[0])
        train, test = corpus.train[u], corpus.test[u]
        assert len(test) == max(1, round(0.2 * len(docs))) and len(train) + len(test) == len(docs)
        assert [d[1:] for d in docs] == [tuple(x) for x in train + test]  # chronological order kept


def _s140_raw():
    raw = {}
    with open(S140, encoding="latin-1", newline="") as f:
        for pol, _, date, _, user, text in csv.reader(f):
            if pol == "2":
                continue
            parts = date.split()
            t = datetime.strptime(" ".join(parts[:4] + parts[5:]), "%a %b %d %H:%M:%S %Y").timestamp()
            raw.setdefault(user, []).append((t, text, {"0": 0, "4": 1}[pol]))
    return raw


def test_sentiment140():
    c = load_sentiment140(S140)
    raw = _s140_raw()
    assert c.task == "classify" and c.n_classes == 2 and c.details["dropped_neutral"] == 1
    assert set(c.users) == {u for u, d in raw.items() if len(d) >= 2}  # the one-tweet user is dropped
    _check_split(c, raw)
    assert any("café" in t for u in c.users for t, _ in c.train[u] + c.test[u])  # latin-1 decoded
    assert load_corpus(S140).train == c.train  # sniffed from the headerless 6-column shape


def _amazon_raw(path, user_key, rating_key, text_key, time_key, scale=1.0):
    raw = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r.get(text_key):
            label = {1: 0, 2: 0, 3: 0, 4: 1, 5: 2}[int(r[rating_key])]
            raw.setdefault(r[user_key], []).append((r[time_key] / scale, r[text_key], label))
    return raw


@pytest.mark.parametrize("path, keys", [(AMZ18, ("reviewerID", "overall", "reviewText", "unixReviewTime", 1.0)),
                                        (AMZ23, ("user_id", "rating", "text", "timestamp", 1000.0))])
def test_amazon(path, keys):
    c = load_amazon(path)
    raw = _amazon_raw(path, *keys)
    assert c.task == "classify" and c.n_classes == 3
    assert set(c.users) == set(raw)
    _check_split(c, raw)
    _, _, labels = c.flat("train")
    assert set(labels) <= {0, 1, 2}
    assert load_corpus(path).train == c.train


def test_amazon_gzip(tmp_path):
    gz = tmp_path / "Books_5.json.gz"
    with gzip.open(gz, "wb") as f:
        f.write(AMZ18.read_bytes())
    assert load_corpus(gz).train == load_amazon(AMZ18).train


def _leaf_raw():
    data = json.loads(LEAF.read_text())
    raw = {}
    for u in data["users"]:
        for x, y in zip(data["user_data"][u]["x"], data["user_data"][u]["y"]):
            words = [w for chunk in x for w in chunk if w not in ("<BOS>", "<EOS>", "<PAD>")]
            raw.setdefault(u, []).append((y["created_utc"], " ".join(words), None))
    return raw


def test_leaf_reddit(tmp_path):
    c = load_leaf_reddit(LEAF)
    raw = _leaf_raw()
    assert c.task == "next_token" and c.n_classes is None and c.flat("train")[2] is None
    assert set(c.users) == {u for u, d in raw.items() if len(d) >= 2}
    _check_split(c, raw)
    assert load_corpus(LEAF).train == c.train
    # A folder of LEAF files (e.g. its train/ and test/ parts): users in several files are merged.
    data = json.loads(LEAF.read_text())
    for part, sl in (("train", slice(0, 3)), ("test", slice(3, None))):
        piece = {"users": data["users"], "num_samples": [], "user_data": {}}
        for u in data["users"]:
            ud = data["user_data"][u]
            piece["user_data"][u] = {"x": ud["x"][sl], "y": ud["y"][sl]}
        (tmp_path / part).mkdir()
        (tmp_path / part / f"reddit_0_{part}.json").write_text(json.dumps(piece))
    assert load_corpus(tmp_path).train == c.train


def test_leaf_integer_ids_name_their_string_keys_and_other_ids_are_one_line_errors(tmp_path):
    data = json.loads(LEAF.read_text())
    names = {u: i for i, u in enumerate(data["users"])}  # the same users, renamed 0, 1, ...
    renamed = {"users": list(names.values()),
               "user_data": {str(i): data["user_data"][u] for u, i in names.items()}}
    (tmp_path / "ints.json").write_text(json.dumps(renamed))
    c, ref = load_leaf_reddit(tmp_path / "ints.json"), load_leaf_reddit(LEAF)
    assert sorted(c.users) == sorted(str(names[u]) for u in ref.users)
    assert [c.train[str(names[u])] for u in ref.users] == [ref.train[u] for u in ref.users]
    for bad in ([1, 2], {"a": 1}, None, True, 1.5):
        (tmp_path / "bad.json").write_text(json.dumps({"users": [bad], "user_data": {}}))
        with pytest.raises(InputError, match="LEAF user ids are strings or integers"):
            load_leaf_reddit(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps({"users": "u1", "user_data": {}}))
    with pytest.raises(InputError, match="'users' must be a list"):
        load_leaf_reddit(tmp_path / "bad.json")


def test_generic_csv_with_labels_and_dates():
    c = load_csv(GCSV, "user", "text", "label", "time")
    raw = {}
    with open(GCSV, newline="") as f:
        for r in csv.DictReader(f):
            raw.setdefault(r["user"], []).append((datetime.fromisoformat(r["time"]), r["text"], int(r["label"])))
    assert c.task == "classify" and c.n_classes == 2 and set(c.users) == {"alice", "bob"}
    _check_split(c, raw)


def test_string_labels_are_mapped_in_natural_order():
    c = load_csv(FIX / "string_labels.csv", "reviewer", "review", "stars", "posted")
    mapping = {"1 star": 0, "2 stars": 1, "3 stars": 2, "4 stars": 3, "5 stars": 4}
    assert c.details["label_mapping"] == mapping and c.details["label_names"] == list(mapping)
    assert c.n_classes == 5 and c.details["split"] == "chronological"
    with open(FIX / "string_labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    raw = {}
    for r in rows:
        raw.setdefault(r["reviewer"], []).append((datetime.fromisoformat(r["posted"]), r["review"], mapping[r["stars"]]))
    _check_split(c, raw)
    # names sort by their numbers, not as text: "10 stars" after "9 stars"
    from idfree_core.data.loaders import _natural_key
    assert sorted(["10 stars", "9 stars", "1 star"], key=_natural_key) == ["1 star", "9 stars", "10 stars"]


def test_pos_neg_jsonl_with_a_numeric_time_column():
    c = load_jsonl(FIX / "pos_neg.jsonl", "user", "text", "sentiment", "ts")
    assert c.details["label_mapping"] == {"neg": 0, "pos": 1}
    raw = {}
    for line in (FIX / "pos_neg.jsonl").read_text().splitlines():
        r = json.loads(line)
        raw.setdefault(r["user"], []).append((r["ts"], r["text"], {"neg": 0, "pos": 1}[r["sentiment"]]))
    _check_split(c, raw)  # the latest document of each user is its test document
    assert load_corpus(FIX / "pos_neg.jsonl", user_column="user", text_column="text", label_column="sentiment",
                       time_column="ts").test == c.test


def test_generic_jsonl_without_labels_is_next_token():
    c = load_jsonl(GJSONL, "author", "body", time_column="created")
    raw = {}
    for line in GJSONL.read_text().splitlines():
        r = json.loads(line)
        raw.setdefault(r["author"], []).append((r["created"], r["body"], None))
    assert c.task == "next_token" and c.n_classes is None
    _check_split(c, raw)
    assert load_corpus(GJSONL, user_column="author", text_column="body").task == "next_token"


def test_seeded_split_without_times():
    a = load_csv(GCSV, "user", "text", "label", seed=1)
    b = load_csv(GCSV, "user", "text", "label", seed=1)
    assert a.train == b.train and a.test == b.test and a.details["split"].startswith("shuffled")
    seeds = {load_csv(GCSV, "user", "text", "label", seed=s).test["alice"] for s in range(10)}
    assert len(seeds) > 1  # the seed changes the split


def test_max_users_and_min_docs():
    raw = _s140_raw()
    counts = {u: len(d) for u, d in raw.items()}
    most_active = sorted(counts, key=lambda u: (-counts[u], u))[:2]  # ties broken by name
    assert set(load_sentiment140(S140, max_users=2).users) == set(most_active)
    k = sorted(counts.values())[-2]
    assert set(load_sentiment140(S140, min_docs_per_user=k).users) == {u for u in counts if counts[u] >= k}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 10**6)), min_size=4, max_size=60),
       st.integers(0, 5))
def test_split_property(rows, seed):
    users = [u for u, _ in rows]
    docs = [(f"d{i}", 0) for i in range(len(rows))]
    times = [t for _, t in rows]
    try:
        keep, train, test = split_per_user(users, docs, times, seed=seed)
    except InputError:
        assert sum(users.count(u) >= 2 for u in set(users)) < 2
        return
    for u in keep:
        idx_train = [int(d[1:]) for d, _ in train[u]]
        idx_test = [int(d[1:]) for d, _ in test[u]]
        assert sorted(idx_train + idx_test) == [i for i, v in enumerate(users) if v == u]
        assert max(times[i] for i in idx_train) <= min(times[i] for i in idx_test)
        assert len(idx_test) >= 1 and len(idx_train) >= 1


def test_tokenizer():
    tok = Tokenizer.build(["the cat sat", "the cat ran", "a dog"], max_vocab=6)
    assert tok.itos[:4] == ("<pad>", "<unk>", "<bos>", "<eos>") and tok.vocab_size == 6
    assert tok.itos[4:] == ("cat", "the")  # most frequent first, ties alphabetical
    ids, mask = tok.encode(["the cat flew away", "cat"], max_len=5, add_bos=True)
    assert ids.dtype.is_floating_point is False and tuple(ids.shape) == (2, 5)
    assert ids[0].tolist() == [2, 5, 4, 1, 1] and mask[0].tolist() == [1, 1, 1, 1, 1]
    assert ids[1].tolist() == [2, 4, 0, 0, 0] and mask[1].tolist() == [1, 1, 0, 0, 0]
    ids, _ = tok.encode(["the cat the cat the cat"], max_len=3, return_tensors="np")
    assert isinstance(ids, np.ndarray) and ids.shape == (1, 3)
    assert tok.decode([2, 5, 4, 0]) == "the cat"
    assert Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict()))) == tok


def test_persona_via_dispatcher():
    c = load_corpus("persona", n_users=5, docs_per_user=10)
    assert c.name == "persona" and len(c.users) == 5


# ---------------------------------------------------------------- bad input: one line, names the file

def _write(tmp_path, name, content, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return p


def _s140_lines():
    return S140.read_bytes().decode("latin-1").splitlines(keepends=True)


BAD_CASES = {
    "missing file": lambda d: (lambda: load_sentiment140(d / "nope.csv"), "nope.csv", "no such file"),
    "empty file": lambda d: (lambda: load_amazon(_write(d, "empty.jsonl", "")), "empty.jsonl", "empty"),
    "blank file": lambda d: (lambda: load_csv(_write(d, "blank.csv", "\n\n"), "u", "t"), "blank.csv", "empty"),
    "missing column": lambda d: (lambda: load_csv(GCSV, "author", "text"), "generic.csv", "missing column 'author'"),
    "missing jsonl field": lambda d: (lambda: load_jsonl(GJSONL, "author", "body", "stars"), "generic.jsonl",
                                      "missing column 'stars'"),
    "wrong encoding csv": lambda d: (lambda: load_csv(_write(d, "utf16.csv", GCSV.read_text(), "utf-16"), "user",
                                                      "text"), "utf16.csv", "encoding"),
    "wrong encoding s140": lambda d: (lambda: load_sentiment140(_write(d, "s140_utf16.csv", S140.read_text("latin-1"),
                                                                       "utf-16")), "s140_utf16.csv", "encoding"),
    "latin-1 as utf-8": lambda d: (lambda: load_csv(_write(d, "latin.csv", "user,text\nx,caf\xe9\n", "latin-1"),
                                                    "user", "text"), "latin.csv", "utf-8"),
    "malformed json line": lambda d: (lambda: load_amazon(_write(d, "bad.jsonl", "".join(
        AMZ18.read_text().splitlines(keepends=True)[:3]) + '{"reviewerID": "x", \n')), "bad.jsonl", "line 4"),
    "json not an object": lambda d: (lambda: load_jsonl(_write(d, "arr.jsonl", "[1, 2]\n"), "u", "t"), "arr.jsonl",
                                     "line 1"),
    "polarity out of range": lambda d: (lambda: load_sentiment140(_write(d, "pol.csv", "".join(_s140_lines()[:4])
                                                                         + _s140_lines()[4].replace('"4"', '"3"', 1),
                                                                         "latin-1")), "pol.csv", "line 5"),
    "s140 wrong field count": lambda d: (lambda: load_sentiment140(GCSV), "generic.csv", "6"),
    "s140 bad date": lambda d: (lambda: load_sentiment140(_write(d, "date.csv", _s140_lines()[0].replace(
        "Mon Apr 06 22:19:45 PDT 2009", "yesterday"), "latin-1")), "date.csv", "date"),
    "rating out of range": lambda d: (lambda: load_amazon(_write(d, "r6.jsonl", AMZ23.read_text().replace(
        '"rating": 4.0', '"rating": 6.0', 1))), "r6.jsonl", "rating"),
    "amazon missing user": lambda d: (lambda: load_amazon(GJSONL), "generic.jsonl", "user"),
    "labels mix numbers and names": lambda d: (lambda: load_csv(_write(d, "lab.csv", "user,text,label\na,x,pos\n"
                                                                           "a,y,1\nb,z,neg\nb,w,pos\n"), "user",
                                                                "text", "label"), "lab.csv", "mix numbers and names"),
    "empty label name": lambda d: (lambda: load_csv(_write(d, "empty.csv", "user,text,label\na,x,pos\na,y, \n"
                                                                       "b,z,neg\nb,w,pos\n"), "user", "text", "label"),
                                   "empty.csv", "line 3: empty label"),
    "time column on sentiment140": lambda d: (lambda: load_corpus(S140, time_column="date"), "sentiment140_sample.csv",
                                              "time column applies to csv/jsonl"),
    "label negative": lambda d: (lambda: load_csv(_write(d, "neg.csv", "user,text,label\na,x,-1\n"), "user", "text",
                                                  "label"), "neg.csv", "label"),
    "label beyond n_classes": lambda d: (lambda: load_csv(GCSV, "user", "text", "label", n_classes=1),
                                         "generic.csv", "out of range"),
    "single label value": lambda d: (lambda: load_csv(_write(d, "one.csv", "user,text,label\na,x,1\na,y,1\nb,z,1\nb,w,1\n"),
                                                      "user", "text", "label"), "one.csv", "single value"),
    "bad time": lambda d: (lambda: load_csv(GCSV, "user", "text", time_column="text"), "generic.csv", "time"),
    "too few docs per user": lambda d: (lambda: load_sentiment140(S140, min_docs_per_user=50), "sentiment140_sample.csv",
                                        "at least 50 documents"),
    "ragged csv row": lambda d: (lambda: load_csv(_write(d, "rag.csv", "user,text\na,x,extra\n"), "user", "text"),
                                 "rag.csv", "line 2"),
    "leaf malformed": lambda d: (lambda: load_leaf_reddit(_write(d, "leaf.json", '{"users": ["1"], ')),
                                 "leaf.json", "malformed JSON"),
    "leaf wrong shape": lambda d: (lambda: load_leaf_reddit(_write(d, "leaf2.json", '{"users": ["1"], "user_data": {}}')),
                                   "leaf2.json", "user_data"),
    "leaf x/y mismatch": lambda d: (lambda: load_leaf_reddit(_write(d, "leaf3.json", json.dumps(
        {"users": ["1"], "user_data": {"1": {"x": ["a b", "c"], "y": [{}]}}}))), "leaf3.json", "'y' 1"),
    "leaf empty folder": lambda d: (lambda: load_leaf_reddit(d), d.name, "no .json"),
    "unknown format": lambda d: (lambda: load_corpus(GCSV, format="xml"), "format", "xml"),
    "unknown extension": lambda d: (lambda: load_corpus(_write(d, "data.parquet", "x")), "data.parquet", "format"),
    "unknown option": lambda d: (lambda: load_sentiment140(S140, max_user=3), "max_user", "unknown option"),
    "no column names": lambda d: (lambda: load_corpus(GCSV, format="csv"), "generic.csv", "--user-column"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input(case, tmp_path):
    call, name, fragment = BAD_CASES[case](tmp_path)
    with pytest.raises(InputError) as e:
        call()
    msg = str(e.value)
    assert name in msg and fragment in msg, msg
    assert "\n" not in msg


def test_never_unpickles(tmp_path):
    import pickle
    p = tmp_path / "evil.json"
    p.write_bytes(pickle.dumps({"users": []}))
    with pytest.raises(InputError):
        load_corpus(p)
