"""Language codes of the M2M100 checkpoints (fairseq's language lists).

The position of a code in its list fixes its token id: `__xx__` has id
`len(vocab.json) + position`. Same lists and order as transformers'
`FAIRSEQ_LANGUAGE_CODES`.
"""

M2M100_LANGUAGE_CODES = {
    "m2m100": (
        "af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga "
        "gd gl gu ha he hi hr ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt "
        "lv mg mk ml mn mr ms my ne nl no ns oc or pa pl ps pt ro ru sd si sk sl so sq sr ss "
        "su sv sw ta th tl tn tr uk ur uz vi wo xh yi yo zh zu"
    ).split(),
    # The "wmt21" list has 8 entries (en, ha, is, ja, cs, ru, zh, de).
    "wmt21": "en ha is ja cs ru zh de".split(),
}
