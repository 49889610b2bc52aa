"""A small, real parallel corpus from the CLDR locale data that Babel ships.

Every CLDR locale names the world's territories, languages and scripts, and the
months and weekdays, in its own language. Pairing the English name with the
German / French / Spanish / ... name of the same CLDR key gives a few thousand
short, clean translation pairs ("Switzerland" -> "Schweiz", "Swiss German" ->
"Schweizerdeutsch", "Monday" -> "Montag") without any download.

The held-out split is by CLDR *key*, so an English name that is held out is never
seen in training for any target language. It is deterministic (a hash of the
key), about 10% of the territory / language / script keys. Months and weekdays
are always in training: they cannot be translated compositionally, only
memorised.

Needs `pip install babel` (an example-only extra, not a tfmodels dependency).
"""

import hashlib

# Target languages: each is both a CLDR locale and an M2M100 language code.
DEFAULT_TARGETS = ("de", "fr", "es")
SOURCE_LANGUAGE = "en"
# Categories that can be held out (names built from parts and cognates).
COMPOSITIONAL = ("territories", "languages", "scripts")
HELD_OUT_PERCENT = 10


def is_held_out(category, key, percent=HELD_OUT_PERCENT):
    """Deterministic ~`percent`% split by CLDR key (same in every process and locale)."""
    if category not in COMPOSITIONAL:
        return False
    digest = hashlib.sha256(f"{category}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < percent


def _names(locale, category):
    """`{key: name}` of one CLDR category in one locale."""
    if category in COMPOSITIONAL:
        return dict(getattr(locale, category).items())
    # Months and weekdays: the stand-alone form ("Januar", "janvier", "enero").
    table = getattr(locale, category)["stand-alone"]["wide"]
    return {str(key): name for key, name in table.items()}


def has_locale(code):
    """Whether CLDR (Babel) knows the locale `code`."""
    from babel import Locale, UnknownLocaleError  # example-only dependency

    try:
        Locale.parse(code)
    except (ValueError, UnknownLocaleError):
        return False
    return True


def load_pairs(targets=DEFAULT_TARGETS):
    """All English -> target pairs as dicts.

    Each dict has `source`, `target`, `src_lang`, `tgt_lang`, `category`, `key` and
    `held_out`. Where several keys share one English name (CLDR aliases), only the
    first key is kept so one source never has two different references.
    """
    from babel import Locale  # example-only dependency

    source_locale = Locale(SOURCE_LANGUAGE)
    pairs = []
    for tgt in targets:
        target_locale = Locale(tgt)
        for category in COMPOSITIONAL + ("months", "days"):
            source_names = _names(source_locale, category)
            target_names = _names(target_locale, category)
            seen_sources = set()
            for key in sorted(source_names):
                source, target = source_names[key], target_names.get(key)
                if not target or source in seen_sources:
                    continue
                seen_sources.add(source)
                pairs.append({
                    "source": source, "target": target,
                    "src_lang": SOURCE_LANGUAGE, "tgt_lang": tgt,
                    "category": category, "key": key,
                    "held_out": is_held_out(category, key),
                })
    return pairs


def augment(train_pairs, reverse=False, identity=False):
    """Extra training pairs that help a small model copy and spell names.

    `reverse`: every training pair also target -> English (M2M100 is many-to-many, and
    the English names become decoder targets too). `identity`: each English training
    name once as English -> English, which teaches the decoder to reproduce source
    pieces (most proper names are written the same in every Latin-script language).
    Held-out keys never appear, in any direction.
    """
    extra = []
    if reverse:
        extra += [dict(p, source=p["target"], target=p["source"], src_lang=p["tgt_lang"],
                       tgt_lang=p["src_lang"]) for p in train_pairs]
    if identity:
        seen = set()
        for p in train_pairs:
            if p["source"] not in seen:
                seen.add(p["source"])
                extra.append(dict(p, target=p["source"], tgt_lang=p["src_lang"]))
    return list(train_pairs) + extra


def split(pairs):
    """`(train, held_out)` lists of pair dicts."""
    return [p for p in pairs if not p["held_out"]], [p for p in pairs if p["held_out"]]


if __name__ == "__main__":
    train, held_out = split(load_pairs())
    print(f"{len(train)} training pairs, {len(held_out)} held-out pairs")
    for pair in held_out[:10]:
        print(f"  {pair['source']} -> [{pair['tgt_lang']}] {pair['target']}")
