"""scikit-learn's TF-IDF n-gram features, computed with numpy instead of Python loops.

``TfidfVectorizer`` builds every n-gram of every text as a Python string and looks each
up in a dict: for headlines that is nearly all of the TF-IDF predictor's time (the
``char_wb`` analyser most of it). Here a batch becomes one array — of code points (char
n-grams, each word padded with spaces) or of token ids (word n-grams) — each n-gram a
64-bit polynomial hash of its items and its length, computed for all positions at once
and looked up in a table of the vocabulary's hashes. The counts then go through the
vectoriser's own fitted ``TfidfTransformer``, so the matrix is the one
``vectorizer.transform`` gives (``tests/test_ngrams.py`` compares them on English,
Hindi and edge cases). Vectorisers this cannot reproduce exactly (accent stripping,
stop words, custom analysers, two vocabulary terms with one hash) keep scikit-learn's
path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import chain, repeat
from typing import Any

import numpy as np
import scipy.sparse as sp

PRIME = np.uint64(1_000_003)
CHUNK_CHARS = 1 << 20  # characters hashed at once: a few arrays of 8 bytes a character


def fast_transform(vectorizer: Any) -> Any:
    """``vectorizer.transform``, or an exact faster equivalent where one exists."""
    parts = getattr(vectorizer, "transformer_list", None)
    if parts is not None:
        if getattr(vectorizer, "transformer_weights", None):
            return vectorizer.transform
        return Union([fast_transform(part) for _, part in parts])
    found = hashed(vectorizer)
    return found.transform if found is not None else vectorizer.transform


def hashed(vectorizer: Any) -> HashedNgrams | None:
    """The exact hashed n-grams of one fitted TfidfVectorizer, or None where there are none."""
    for kind in (CharWbNgrams, WordNgrams):
        if kind.supports(vectorizer):
            found = kind(vectorizer)
            return found if found.exact else None
    return None


class Union:
    """A FeatureUnion's ``transform`` from its parts' (a class, so predictors pickle)."""

    def __init__(self, transforms: list[Any]) -> None:
        self.transforms = transforms

    def __call__(self, texts: list[str]) -> sp.csr_matrix:
        return sp.hstack([t(texts) for t in self.transforms], format="csr")


def _plain(vectorizer: Any) -> bool:
    """A fitted TfidfVectorizer with nothing custom between the text and its n-grams."""
    low, high = getattr(vectorizer, "ngram_range", (0, 0))
    return (
        getattr(vectorizer, "preprocessor", None) is None
        and getattr(vectorizer, "strip_accents", None) is None
        and hasattr(vectorizer, "vocabulary_")
        and hasattr(vectorizer, "_tfidf")
        and isinstance(low, int)
        and isinstance(high, int)
        and 1 <= low <= high
    )


class HashedNgrams:
    """The vocabulary as hashes; n-gram hashes to columns, then to the TF-IDF matrix."""

    _counts: Callable[[list[str]], sp.csr_matrix]  # each subclass's counting of one slice

    def __init__(self, vectorizer: Any, hashes: np.ndarray) -> None:
        self.vectorizer = vectorizer
        self.low, self.high = vectorizer.ngram_range
        hashes = _mix(hashes)
        self.width = len(hashes)
        self.exact = len(np.unique(hashes)) == len(hashes)  # no two terms share a hash
        # A direct-address table on the top bits of the hash: one gather of one 64-bit
        # word per n-gram, holding the column (top bits) and the hash's other bits. The
        # terms of slots two terms share (about a sixth) go to a second table.
        self.bits = _bits(len(hashes), 10)
        shift = np.uint64(64 - self.bits)
        self.mask = np.uint64((1 << (64 - self.bits)) - 1)
        slots = (hashes >> shift).astype(np.int64)
        crowded = np.bincount(slots, minlength=1 << self.bits) > 1
        column = np.full(1 << self.bits, _empty(self.bits), dtype=np.uint64)
        column[slots] = np.arange(len(hashes), dtype=np.uint64)
        column[crowded] = _shared(self.bits)
        rest = np.zeros(1 << self.bits, dtype=np.uint64)
        rest[slots] = hashes & self.mask
        self.table = (column << shift) | rest
        moved = np.flatnonzero(crowded[slots])
        self.overflow = Overflow(hashes[moved], moved)

    def columns_of(self, gram: np.ndarray) -> np.ndarray:
        """Each n-gram hash's vocabulary column, or -1."""
        gram = _mix(gram)
        entry = self.table[(gram >> np.uint64(64 - self.bits)).astype(np.int64)]
        column = (entry >> np.uint64(64 - self.bits)).astype(np.int64)
        shared = np.flatnonzero(column == _shared(self.bits))
        other = (entry & self.mask) != (gram & self.mask)
        column[(column >= _shared(self.bits)) | other] = -1
        if len(shared):
            column[shared] = self.overflow.columns_of(gram[shared])
        return column

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        """The vectoriser's TF-IDF matrix of ``texts``."""
        return self.vectorizer._tfidf.transform(self.counts(texts), copy=False)

    def counts(self, texts: list[str]) -> sp.csr_matrix:
        """The vectoriser's term counts of ``texts`` (before TF-IDF weighting), in slices
        of at most ``CHUNK_CHARS`` characters (one long text a slice of its own), so
        memory is bounded by that, not the batch."""
        slices, start, size = [], 0, 0
        for end, text in enumerate(texts):
            if size and size + len(text) > CHUNK_CHARS:
                slices.append((start, end))
                start, size = end, 0
            size += len(text)
        slices.append((start, len(texts)))
        if len(slices) == 1:
            return self._counts(texts)
        return sp.vstack([self._counts(texts[a:b]) for a, b in slices], format="csr")

    def counted(self, gram: np.ndarray, owner: np.ndarray, docs: int) -> sp.csr_matrix:
        """The vectoriser's term counts from n-gram hashes and the document of each.

        One sort of (document, column) keys gives the counts in canonical CSR order
        directly: building the matrix from coordinates, then summing duplicates, sorted
        each row's columns again and took twice as long."""
        return self.counted_columns(self.columns_of(gram), owner, docs)

    def counted_columns(self, column: np.ndarray, owner: np.ndarray, docs: int) -> sp.csr_matrix:
        """:meth:`counted` from each n-gram's column (-1: not a term) instead of its hash."""
        known = column >= 0
        # 32-bit keys where every (document, column) pair fits: they sort twice as fast.
        kind: type[np.signedinteger[Any]] = np.int32 if docs * self.width < 2**31 else np.int64
        key = owner[known].astype(kind) * kind(self.width) + column[known].astype(kind)
        key.sort()
        edge = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else key
        counts = np.diff(np.r_[edge, len(key)]).astype(self.vectorizer.dtype)
        key = key[edge]
        rows = key // self.width
        counts = sp.csr_matrix(
            (counts, key - rows * self.width, np.searchsorted(rows, np.arange(docs + 1))),
            shape=(docs, self.width),
        )
        counts.has_canonical_format = True  # sorted, no duplicates: by construction
        if self.vectorizer.binary:
            counts.data.fill(1)
        return counts


class Overflow:
    """The terms of shared slots: a direct-address table on the hash's low bits holding
    each hash whole and its column; slots shared again fall back to a binary search over
    these terms' sorted hashes."""

    def __init__(self, hashes: np.ndarray, columns: np.ndarray) -> None:
        bits = _bits(len(hashes), 4)
        self.low = np.uint64((1 << bits) - 1)
        slots = (hashes & self.low).astype(np.int64)
        self.hash = np.zeros(1 << bits, dtype=np.uint64)
        self.column = np.full(1 << bits, -1, dtype=np.int64)  # -1: no term; -2: shared
        self.hash[slots], self.column[slots] = hashes, columns
        self.column[np.bincount(slots, minlength=1 << bits) > 1] = -2
        order = np.argsort(hashes, kind="stable")
        self.sorted, self.sorted_columns = hashes[order], columns[order]

    def columns_of(self, gram: np.ndarray) -> np.ndarray:
        slots = (gram & self.low).astype(np.int64)
        column = self.column[slots]
        found = np.where((column >= 0) & (self.hash[slots] == gram), column, -1)
        again = np.flatnonzero(column == -2)
        if len(again):
            at = np.minimum(np.searchsorted(self.sorted, gram[again]), len(self.sorted) - 1)
            found[again] = np.where(self.sorted[at] == gram[again], self.sorted_columns[at], -1)
        return found


class CharWbNgrams(HashedNgrams):
    """A fitted ``char_wb`` TfidfVectorizer's ``transform``, vectorised."""

    def __init__(self, vectorizer: Any) -> None:
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        super().__init__(vectorizer, _string_hashes(terms))

    @staticmethod
    def supports(vectorizer: Any) -> bool:
        return getattr(vectorizer, "analyzer", None) == "char_wb" and _plain(vectorizer)

    def _counts(self, texts: list[str]) -> sp.csr_matrix:
        """Each distinct word's n-grams are hashed and looked up once (a char_wb n-gram
        never crosses a word), then handed to every occurrence of the word: a call of
        2,048 distinct gold headlines holds each word about three times, one of the batch
        CLI's 512 demo rows about four."""
        # scikit-learn collapses whitespace runs, then splits on them: split() alone
        # gives the same words.
        lower = self.vectorizer.lowercase
        found = [(text.lower() if lower else text).split() for text in texts]
        per_doc = np.fromiter(map(len, found), dtype=np.int64, count=len(found))
        words = list(chain.from_iterable(found))
        index = {w: i for i, w in enumerate(dict.fromkeys(words))}  # distinct, in order
        word_of = np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))
        if not index:
            return self.counted(np.zeros(0, np.uint64), np.zeros(0, np.int64), len(texts))
        columns, starts = self._word_columns(list(index))
        # Every occurrence's run of its word's columns, laid end to end.
        runs = np.diff(starts)[word_of]
        ends = np.cumsum(runs)
        at = np.repeat(starts[word_of] - (ends - runs), runs) + np.arange(ends[-1])
        owner = np.repeat(np.repeat(np.arange(len(texts)), per_doc), runs)
        return self.counted_columns(columns[at], owner, len(texts))

    def _word_columns(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The vocabulary columns of each word's n-grams (terms only), as CSR-style
        ``(columns, starts)``: word ``i``'s are ``columns[starts[i]:starts[i + 1]]``."""
        padded = " " + "  ".join(words) + " "  # each word as " word ", end to end
        codes = np.frombuffer(padded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words)) + 2
        gram, owner = _ngram_hashes(codes, lengths, np.arange(len(words)), self.low, self.high)
        # A word shorter than the smallest n counts once, whole (scikit-learn's rule).
        short = np.flatnonzero(lengths < self.low)
        if len(short):
            gram = np.concatenate([gram, _string_hashes([f" {words[i]} " for i in short])])
            owner = np.concatenate([owner, short])
        column = self.columns_of(gram)
        known = np.flatnonzero(column >= 0)
        owner, column = owner[known], column[known]
        order = np.argsort(owner, kind="stable")
        starts = np.searchsorted(owner[order], np.arange(len(words) + 1))
        return column[order], starts


class WordNgrams(HashedNgrams):
    """A fitted word-level TfidfVectorizer's ``transform``: tokens by its own pattern,
    n-grams of token ids hashed in numpy."""

    def __init__(self, vectorizer: Any) -> None:
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        self.pattern = re.compile(vectorizer.token_pattern)
        self.ids: dict[str, int] = {}  # 0: a token no term has
        sequences = [
            [self.ids.setdefault(t, len(self.ids) + 1) for t in term.split(" ")] for term in terms
        ]
        super().__init__(vectorizer, _sequence_hashes(sequences))
        # Terms join tokens with spaces: exact only if every term splits back into tokens
        # the pattern makes whole, as many as the n-gram range allows.
        low, high = self.low, self.high
        self.exact = (
            self.exact
            and all(low <= len(s) <= high for s in sequences)
            and all(self.pattern.fullmatch(t) for t in self.ids)
        )

    @staticmethod
    def supports(vectorizer: Any) -> bool:
        pattern = getattr(vectorizer, "token_pattern", None)
        return (
            getattr(vectorizer, "analyzer", None) == "word"
            and getattr(vectorizer, "tokenizer", None) is None
            and getattr(vectorizer, "stop_words", None) is None
            and isinstance(pattern, str)
            and re.compile(pattern).groups <= 1
            and _plain(vectorizer)
        )

    def _counts(self, texts: list[str]) -> sp.csr_matrix:
        find, lower, get = self.pattern.findall, self.vectorizer.lowercase, self.ids.get
        found = [find(text.lower() if lower else text) for text in texts]
        per_doc = np.fromiter(map(len, found), dtype=np.int64, count=len(found))
        tokens = list(chain.from_iterable(found))
        ids = np.fromiter(map(get, tokens, repeat(0)), dtype=np.uint64, count=len(tokens))
        gram, owner = _ngram_hashes(ids, per_doc, np.arange(len(texts)), self.low, self.high)
        return self.counted(gram, owner, len(texts))


def _ngram_hashes(
    items: np.ndarray, lengths: np.ndarray, owner_of_unit: np.ndarray, low: int, high: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every n-gram (low <= n <= high) inside each unit of ``items`` (units laid
    end to end, ``lengths`` long), and the owner of each: ``h_0 = 0``,
    ``h_k = h_{k-1}·PRIME + PRIME^k + item_k`` (mod 2**64), so the length counts."""
    end_of = np.repeat(np.cumsum(lengths), lengths)  # each position: where its unit ends
    owner_of = np.repeat(owner_of_unit, lengths)
    positions = np.arange(len(items))
    grams: list[np.ndarray]
    owners: list[np.ndarray]
    grams, owners = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)]
    hashes = np.zeros(len(items), dtype=np.uint64)
    with np.errstate(over="ignore"):  # the hash wraps modulo 2**64 on purpose
        # No n-gram is longer than its unit: a model's huge ngram_range costs nothing more.
        for n in range(1, min(high, int(lengths.max(initial=0))) + 1):
            hashes = hashes[: len(items) - n + 1] * PRIME + _power(n) + items[n - 1 :]
            if n >= low:
                valid = np.flatnonzero(positions[: len(hashes)] + n <= end_of[: len(hashes)])
                grams.append(hashes[valid])
                owners.append(owner_of[valid])
    return np.concatenate(grams), np.concatenate(owners)


def _string_hashes(terms: list[str]) -> np.ndarray:
    """Each string's hash over its code points, as :func:`_ngram_hashes` computes it."""
    out = np.zeros(len(terms), dtype=np.uint64)
    lengths = np.fromiter(map(len, terms), dtype=np.int64, count=len(terms))
    for n in np.unique(lengths):
        rows = np.flatnonzero(lengths == n)
        joined = "".join(terms[i] for i in rows).encode("utf-32-le")
        codes = np.frombuffer(joined, dtype=np.uint32).astype(np.uint64)
        out[rows] = _rows_hash(codes.reshape(len(rows), n))
    return out


def _sequence_hashes(sequences: list[list[int]]) -> np.ndarray:
    """Each sequence of ids' hash, as :func:`_ngram_hashes` computes it."""
    out = np.zeros(len(sequences), dtype=np.uint64)
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    for n in np.unique(lengths):
        rows = np.flatnonzero(lengths == n)
        out[rows] = _rows_hash(np.array([sequences[i] for i in rows], dtype=np.uint64))
    return out


def _rows_hash(items: np.ndarray) -> np.ndarray:
    h = np.zeros(len(items), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(items.shape[1]):
            h = h * PRIME + _power(k + 1) + items[:, k]
    return h


def _mix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: a bijection that spreads the hashes of short
    n-grams (small numbers) over all 64 bits, so the table's top-bit slots are all used."""
    h = h ^ (h >> np.uint64(33))
    with np.errstate(over="ignore"):
        h = h * np.uint64(0xFF51AFD7ED558CCD)
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _power(n: int) -> np.uint64:
    """PRIME ** n modulo 2**64."""
    return np.uint64(pow(int(PRIME), n, 2**64))


def _bits(terms: int, least: int) -> int:
    """A table's index bits: four slots a term or more."""
    return max(least, int(np.ceil(np.log2(max(terms, 1)))) + 2)


def _empty(bits: int) -> int:
    """The column value of a table slot no term has."""
    return (1 << bits) - 1


def _shared(bits: int) -> int:
    """The column value of a slot several terms share."""
    return (1 << bits) - 2
