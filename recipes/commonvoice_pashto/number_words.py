"""Pashto and Urdu number words for the offline proxy corpus of the Pashto recipe (issue 22).

``python recipes/commonvoice_pashto/number_words.py OUT_DIR [--copies 2]`` writes

- ``ps_numbers_fa.tsv`` / ``ps_numbers_ur.tsv``: Pashto transcripts (Arabic script, Pashto letters kept) with the
  respelling the Persian (``fa``) / Urdu (``ur``) eSpeak NG voice reads (``transcript<TAB>spoken form``, see
  ``speechkit prepare synthetic``); each line ``copies`` times (several speakers per text);
- ``ur_numbers.txt``: Urdu number words, for the first stage of Urdu -> Pashto multistage transfer.

No maintained package spells Pashto or Urdu cardinals (checked 2026-11-30: num2words 0.5.14 has neither ``ps`` nor
``ur``; ``pashto-cardinals`` 0.1 and ``pashtocardinals`` 0.1 are 2016-17 Python 2 scripts that write پنڂه for پنځه
and build 21-29 as unit + tens), so the tables are written here from the construction rules of the standard
grammars: Tegey & Robson, *A Reference Grammar of Pashto* (1996), and Penzl, *A Grammar of Pashto* (1955), numerals
(units, teens, tens, the 21-29 forms on -ویشت, unit + tens for 31-99, سل / X سوه, زر / X زره). They were written
from those rules, not checked line by line against the books in this session: where a form was uncertain the
number is left out (no compound beyond 100 in Pashto) rather than guessed; the README lists the uncertain forms.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PS_UNITS = ("صفر", "یو", "دوه", "درې", "څلور", "پنځه", "شپږ", "اووه", "اته", "نهه")
PS_TEENS = ("لس", "یوولس", "دولس", "دیارلس", "څوارلس", "پنځلس", "شپاړس", "اوولس", "اتلس", "نولس")
PS_TENS = {2: "شل", 3: "دېرش", 4: "څلوېښت", 5: "پنځوس", 6: "شپېته", 7: "اویا", 8: "اتیا", 9: "نوي"}
PS_TWENTIES = ("یوویشت", "دوه ویشت", "درویشت", "څلېرویشت", "پنځه ویشت", "شپږ ویشت", "اوه ویشت", "اته ویشت",
               "نهه ویشت")  # 21-29: the irregular -ویشت forms
# Short phrases with the letters numbers lack (ټ ډ ۍ) and the masculine -ay / feminine -a contrast (لوی / لویه).
PS_PHRASES = ("ډېر ښه", "ډېره مننه", "لوی سړی", "لویه ښځه", "ښه سړی", "ښه ښځه", "ښه نجلۍ", "ټول")

# What each proxy voice reads for a Pashto letter it lacks (eSpeak NG 1.52 spells such a letter out as its Unicode
# code point, "letter 6 9 A"): the closest letter of its own language. څ /ts/ becomes ت + س (no /ts/ letter).
RESPELL_FA = {"ټ": "ت", "ډ": "د", "ړ": "ر", "ڼ": "ن", "ښ": "ش", "ږ": "ژ", "ځ": "ز", "څ": "تس", "ې": "ی", "ۍ": "ی",
              "ئ": "ی"}
RESPELL_UR = {"ټ": "ٹ", "ډ": "ڈ", "ړ": "ڑ", "ڼ": "ن", "ښ": "ش", "ږ": "ژ", "ځ": "ز", "څ": "تس", "ۍ": "ی", "ئ": "ئ"}
RESPELL = {"fa": RESPELL_FA, "ur": RESPELL_UR}

UR_UNITS = ("صفر", "ایک", "دو", "تین", "چار", "پانچ", "چھ", "سات", "آٹھ", "نو")
UR_TEENS = ("دس", "گیارہ", "بارہ", "تیرہ", "چودہ", "پندرہ", "سولہ", "سترہ", "اٹھارہ", "انیس", "بیس")  # 10-20
UR_TENS = {3: "تیس", 4: "چالیس", 5: "پچاس", 6: "ساٹھ", 7: "ستر", 8: "اسی", 9: "نوے"}


def pashto_number(number: int) -> str:
    """Pashto words of 0-100, a round hundred (100-900) or a round thousand (1000-9000); anything else is refused."""
    if 0 <= number <= 9:
        return PS_UNITS[number]
    if 10 <= number <= 19:
        return PS_TEENS[number - 10]
    if 21 <= number <= 29:
        return PS_TWENTIES[number - 21]
    if 20 <= number <= 99:
        tens, unit = divmod(number, 10)
        return PS_TENS[tens] if unit == 0 else f"{PS_UNITS[unit]} {PS_TENS[tens]}"
    if number == 100:
        return "سل"
    if number < 1000 and number % 100 == 0:
        return f"{PS_UNITS[number // 100]} سوه"
    if number == 1000:
        return "زر"
    if number < 10_000 and number % 1000 == 0:
        return f"{PS_UNITS[number // 1000]} زره"
    raise ValueError(f"{number}: only 0-100, round hundreds and round thousands up to 9000 are spelled")


def pashto_numbers() -> list[int]:
    """The numbers the Pashto corpus covers: 0-100, 200-900 by hundreds, 1000-9000 by thousands (118)."""
    return list(range(101)) + list(range(200, 1000, 100)) + list(range(1000, 10_000, 1000))


def urdu_below_hundred(number: int) -> str:
    """Urdu words of 0-20 and the round tens 30-90 (the other 21-99 are irregular and left out)."""
    if number <= 9:
        return UR_UNITS[number]
    if number <= 20:
        return UR_TEENS[number - 10]
    if number % 10 == 0 and number <= 90:
        return UR_TENS[number // 10]
    raise ValueError(f"{number}: Urdu 21-99 other than round tens are not spelled")


def urdu_number(number: int) -> str:
    """Urdu words of ``thousands ہزار hundreds سو rest`` with rest in 0-20 or a round ten (ایک سو, ایک ہزار)."""
    thousands, rest = divmod(number, 1000)
    hundreds, rest = divmod(rest, 100)
    parts = [f"{UR_UNITS[thousands]} ہزار"] if thousands else []
    parts += [f"{UR_UNITS[hundreds]} سو"] if hundreds else []
    if rest or not parts:
        parts.append(urdu_below_hundred(rest))
    if not 0 <= number < 10_000:
        raise ValueError(f"{number}: Urdu numbers are spelled for 0-9999")
    return " ".join(parts)


def urdu_numbers() -> list[int]:
    """0-20, the tens, X hundred + (0-20 or a ten), X thousand + Y hundred (370 numbers)."""
    small = list(range(21)) + list(range(30, 100, 10))
    hundreds = [h * 100 + r for h in range(1, 10) for r in small]
    thousands = [t * 1000 + h * 100 for t in range(1, 10) for h in range(10)]
    return sorted(set(small + hundreds + thousands))


def respell(text: str, voice: str) -> str:
    """``text`` with each Pashto letter the proxy ``voice`` lacks replaced by its stand-in (``RESPELL``)."""
    table = RESPELL[voice]
    if voice == "ur":  # Urdu writes /e:/ word-finally as ے, elsewhere ی
        text = " ".join(w[:-1] + "ے" if w.endswith("ې") else w for w in text.split()).replace("ې", "ی")
    return "".join(table.get(char, char) for char in text)


def pashto_lines(voice: str, copies: int = 1) -> list[str]:
    """``transcript<TAB>spoken form`` for every number and phrase, each ``copies`` times."""
    texts = [pashto_number(n) for n in pashto_numbers()] + list(PS_PHRASES)
    return [f"{text}\t{respell(text, voice)}" for text in texts for _ in range(copies)]


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.replace(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--copies", type=int, default=2, help="times each Pashto line is read (several speakers)")
    args = parser.parse_args(argv)
    for voice in ("fa", "ur"):
        write_lines(args.out_dir / f"ps_numbers_{voice}.tsv", pashto_lines(voice, args.copies))
    write_lines(args.out_dir / "ur_numbers.txt", [urdu_number(n) for n in urdu_numbers()])
    print(f"wrote {args.out_dir}/ps_numbers_fa.tsv, ps_numbers_ur.tsv ({len(pashto_lines('fa', args.copies))} lines "
          f"each) and ur_numbers.txt ({len(urdu_numbers())} lines)")


if __name__ == "__main__":
    main()
