"""The ``sample`` corpus: a WikiText-format corpus generated offline and deterministically.

It has structure at several distances, so that a language model with a longer effective
context measurably does better:

* local syntax: sentences from a small grammar (determiner, adjective, noun, prepositional
  phrases, subject-verb number agreement, ``,`` and ``.``), in lines of several sentences;
* long-range dependencies: every article has a topic; its name recurs in the article, about
  half of its sentences draw their nouns, verbs and adjectives from the topic's own
  vocabulary, and the topic's register ends every sentence with its own mark (``.`` or
  ``;``), so tokens far back (the heading, earlier sentences) tell which words come next.

``long_range=False`` switches the long-range part off: each sentence then draws its own topic,
so nothing beyond the current sentence helps predict the next word (the control of the
context-probe test). Words seen fewer than ``unk_min_count`` times become ``<unk>`` as in
WikiText. Layout as WikiText: `` = Title = `` headings, `` = = Section = = `` subheadings,
blank `` `` lines, tokens separated by single spaces.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

SPLITS = ("train", "valid", "test")
DETERMINERS = ["the", "a", "this", "every", "its", "one"]
PREPOSITIONS = ["of", "in", "with", "near", "from", "for", "by", "on"]
ENDINGS = [".", ";"]  # each topic's register ends its sentences one way: a cue a sentence back
SYLLABLES = ["ka", "lo", "mi", "ter", "van", "sel", "dor", "pu", "ri", "gan", "mor", "tis", "bel",
             "cha", "nu", "fen", "gro", "has", "ib", "jul", "kem", "lar", "ost", "pra", "quin",
             "ros", "sun", "tal", "ul", "ver", "wex", "yor", "zan", "ap", "eb", "ic"]


class _Words:
    def __init__(self, rng: np.random.Generator):
        self.rng, self.seen = rng, set(DETERMINERS + PREPOSITIONS + ["and", "but", "The"])

    def new(self, syllables: tuple[int, int] = (2, 3)) -> str:
        while True:
            n = self.rng.integers(syllables[0], syllables[1] + 1)
            word = "".join(self.rng.choice(SYLLABLES, size=n))
            if word not in self.seen:
                self.seen.add(word)
                return word

    def many(self, count: int) -> list[str]:
        return [self.new() for _ in range(count)]


def _zipf(count: int, exponent: float = 1.0) -> np.ndarray:
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    return weights / weights.sum()


class _Grammar:
    def __init__(self, rng: np.random.Generator, topics: int, topic_words: int):
        words = _Words(rng)
        self.rng = rng
        self.nouns = words.many(400)
        self.rare = words.many(3000)  # the long tail: most end as <unk>
        self.verbs = words.many(120)
        self.adjectives = words.many(120)
        self.noun_p, self.rare_p = _zipf(len(self.nouns)), _zipf(len(self.rare), 0.5)
        self.verb_p, self.adj_p = _zipf(len(self.verbs)), _zipf(len(self.adjectives))
        self.topics = [dict(name=[words.new().capitalize() for _ in range(rng.integers(1, 3))],
                            nouns=words.many(topic_words), verbs=words.many(max(1, topic_words // 3)),
                            adjectives=words.many(max(1, topic_words // 3)), end=ENDINGS[i % len(ENDINGS)])
                       for i in range(topics)]

    def pick(self, items: list[str], p: np.ndarray | None = None) -> str:
        return items[self.rng.choice(len(items), p=p)]

    def noun(self, topic: dict | None, plural: bool) -> str:
        r = self.rng.random()
        if topic and r < 0.8:
            word = self.pick(topic["nouns"])
        elif r < 0.93:
            word = self.pick(self.nouns, self.noun_p)
        else:
            word = self.pick(self.rare, self.rare_p)
        return word + "s" if plural else word

    def np(self, topic: dict | None, plural: bool, depth: int = 0) -> list[str]:
        det = "the" if plural else self.pick(DETERMINERS)
        out = [det]
        if self.rng.random() < 0.35:
            out.append(self.pick(topic["adjectives"]) if topic and self.rng.random() < 0.5
                       else self.pick(self.adjectives, self.adj_p))
        out.append(self.noun(topic, plural))
        if depth == 0 and self.rng.random() < 0.25:
            out += [self.pick(PREPOSITIONS)] + self.np(topic, self.rng.random() < 0.3, depth + 1)
        return out

    def verb(self, topic: dict | None, plural_subject: bool) -> str:
        word = (self.pick(topic["verbs"]) if topic and self.rng.random() < 0.5
                else self.pick(self.verbs, self.verb_p))
        return word if plural_subject else word + "s"  # agreement: singular subject, verb+s

    def sentence(self, topic: dict) -> list[str]:
        end = topic["end"]
        """One sentence; about half are topical (the topic's name or words), the rest generic, so the
        evidence for the topic is often several sentences back."""
        plural = self.rng.random() < 0.3
        r = self.rng.random()
        if r < 0.12:  # the topic's name recurs through its article
            subject, plural = ["The"] + topic["name"], False
        else:
            if r >= 0.55:
                topic = None  # a generic sentence: no topic words
            subject = self.np(topic, plural)
            subject[0] = subject[0].capitalize()
        out = subject + [self.verb(topic, plural)] + self.np(topic, self.rng.random() < 0.3)
        if self.rng.random() < 0.25:
            out += [",", self.pick(["and", "but"]), self.verb(topic, plural)] + self.np(topic, False)
        return out + [end]


def generate_sample(seed: int = 0, train_words: int = 60000, valid_words: int = 12000,
                    test_words: int = 12000, topics: int = 24, topic_words: int = 24, long_range: bool = True,
                    unk_min_count: int = 3) -> dict[str, str]:
    """Return {split: text} in WikiText's format; same arguments, same text. ``topics`` topics
    with ``topic_words`` nouns each (and a third as many verbs and adjectives)."""
    rng = np.random.default_rng(seed)
    grammar = _Grammar(rng, topics, topic_words)
    wanted = dict(train=train_words, valid=valid_words, test=test_words)
    lines: dict[str, list[list[str]]] = {}
    for split in SPLITS:
        out: list[list[str]] = []
        count = 0
        while count < wanted[split]:
            topic = grammar.topics[rng.integers(topics)]
            per_sentence = (lambda: topic) if long_range else (lambda: grammar.topics[rng.integers(topics)])
            article = [[], ["="] + (topic if long_range else per_sentence())["name"] + ["="], []]
            for section in range(rng.integers(1, 4)):
                if section:
                    article += [["=", "="] + [grammar.pick(grammar.nouns, grammar.noun_p).capitalize()]
                                + ["=", "="], []]
                for _ in range(rng.integers(1, 4)):
                    paragraph: list[str] = []
                    for _ in range(rng.integers(2, 7)):
                        paragraph += grammar.sentence(per_sentence())
                    article += [paragraph, []]
            out += article
            count += sum(len(line) for line in article)
        lines[split] = out
    counts = Counter(word for split in SPLITS for line in lines[split] for word in line)
    texts = {}
    for split in SPLITS:
        texts[split] = "".join(
            (" " + " ".join(w if counts[w] >= unk_min_count or w == "=" else "<unk>" for w in line) + " \n")
            if line else " \n" for line in lines[split])
    return texts
