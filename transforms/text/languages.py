"""Language codes: ISO 639-1/-2/-3 and fastText lid.176 codes normalised to ISO 639-3.

Shared by the stages that compare configured languages with detected ones (a stage
must not import another stage).
"""

from __future__ import annotations

import functools

# lid.176 codes whose ISO 639-1/3 reading is wrong or missing.
_LID176_SPECIAL = {
    "als": "gsw",  # lid.176 "als" is Alemannic Wikipedia; ISO "als" is Tosk Albanian
    "bh": "bih",  # Bihari (collective code; no individual ISO 639-3 code)
    "eml": "egl",  # Emiliano-Romagnolo: retired ISO code, Emilian is egl
    "nah": "nah",  # Nahuatl (collective)
    "sh": "hbs",  # Serbo-Croatian
}


@functools.cache
def normalize_lang_code(code: str) -> str:
    """ISO 639-1/-2/-3 or lid.176 code -> ISO 639-3 (unknown codes pass through lowercased)."""
    import pycountry

    code = code.strip().lower().replace("-", "_").split("_")[0]
    if code in _LID176_SPECIAL:
        return _LID176_SPECIAL[code]
    if len(code) == 2:
        lang = pycountry.languages.get(alpha_2=code)
        return lang.alpha_3 if lang else code
    if len(code) == 3 and (lang := pycountry.languages.get(bibliographic=code)) is not None:
        return lang.alpha_3  # ISO 639-2/B (e.g. "ger") -> 639-3 ("deu")
    return code


def is_language_code(code: str) -> bool:
    """Whether ``code`` (ISO 639-1/-2/-3 or a lid.176 code) names a language, a
    language collective (ISO 639-5: ``bih``) or a special code (``zxx``, ``und``)."""
    import pycountry

    iso3 = normalize_lang_code(code)
    return (len(iso3) == 3 and iso3.isalpha()
            and (pycountry.languages.get(alpha_3=iso3) is not None
                 or pycountry.language_families.get(alpha_3=iso3) is not None))


def invalid_language_codes(codes) -> list[str]:
    """The codes in ``codes`` that are not language codes, in order."""
    return [c for c in codes if not is_language_code(str(c))]
