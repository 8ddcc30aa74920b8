"""Charsets: supersets of declared labels, aliases, detection and encoded words."""

from pathlib import Path

import pytest

from maildesk.mail import charsets
from maildesk.mail.parse import Address, parse

DATA = Path(__file__).resolve().parents[2] / "data" / "parse"


def load(name: str):
    return parse((DATA / name).read_bytes())


def test_gb2312_label_decodes_gbk_and_gb18030_only_characters():
    mail = load("gb2312_mislabelled.eml")
    assert mail.sender == Address("张三", "zhangsan@example.cn")
    assert mail.subject == "订单已发货"
    assert mail.text == "您好，\n朱镕基先生的订单 𠀋 已发货。价格 €20。\n谢谢"
    assert mail.defects == []


def test_shift_jis_label_decodes_cp932_extensions():
    mail = load("sjis_cp932.eml")
    assert mail.subject == "①ご注文番号"
    assert mail.text == "お世話になります。\n①注文番号の件\n㈱サンプル 髙橋"


def test_latin1_label_decodes_windows_1252_euro_and_smart_quotes():
    mail = load("latin1_cp1252.eml")
    assert mail.sender.name == "François Lefèvre"
    assert mail.subject == "Facture € 100"
    assert "100 € – c'est “normal” ?" in mail.text


def test_unknown_label_with_utf8_bytes():
    mail = load("unknown_charset_utf8.eml")
    assert mail.text == "Schöne Grüße aus Köln – das Gerät ist defekt."
    assert any("unknown charset 'x-foo'" in d for d in mail.defects)


def test_utf8_mislabelled_as_us_ascii():
    mail = load("usascii_utf8.eml")
    assert mail.text == "The café order for Zoë is wrong: 3× croissant."
    assert mail.sender == Address("Zoë", "zoe@example.com")
    assert any("mislabels UTF-8" in d for d in mail.defects)


def test_hebrew_iso_8859_8_i_is_plain_iso_8859_8():
    mail = load("hebrew_iso8859_8_i.eml")
    assert mail.sender == Address("דוד כהן", "david@example.co.il")
    assert mail.subject == "אישור הזמנה מספר 512"
    assert mail.text == "שלום רב,\nההזמנה שלך נשלחה היום.\nתודה, צוות התמיכה"
    assert mail.defects == []


def test_iso_2022_jp_subject_name_and_body():
    mail = load("iso2022jp.eml")
    assert mail.subject == "ご購入の確認"
    assert mail.sender.name == "山田"
    assert mail.text == "ご注文ありがとうございます。"


def test_utf7_subject_and_body():
    mail = load("cron_bare_local.eml")
    assert mail.subject == "Cron 日本語"
    assert mail.text == "Backup finished 日本語 ok"


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("GB2312", "gb18030"),
        ("GBK", "gb18030"),
        ("x-gbk", "gb18030"),
        ("gb_2312-80", "gb18030"),
        ("Shift_JIS", "cp932"),
        ("x-sjis", "cp932"),
        ("ms_kanji", "cp932"),
        ("csShiftJIS", "cp932"),
        ("x-euc-jp", "euc_jp"),
        ("_iso-2022-jp$ESC", "iso2022_jp_ext"),
        ("ISO-8859-1", "cp1252"),
        ("latin1", "cp1252"),
        ("us-ascii", "cp1252"),
        ("ansi_x3.4-1968", "cp1252"),
        ("EUC-KR", "cp949"),
        ("ks_c_5601-1987", "cp949"),
        ("x-windows-949", "cp949"),
        ("ISO-8859-11", "cp874"),
        ("TIS-620", "cp874"),
        ("windows-874", "cp874"),
        ("Big5", "big5hkscs"),
        ("x-x-big5", "big5hkscs"),
        ("utf8", "utf-8"),
        ("utf8mb4", "utf-8"),
        ("ISO-10646-UCS-2", "utf-16-be"),
        ('"UTF-8"', "utf-8"),
        ("utf-8*en", "utf-8"),
        ("unicode-1-1-utf-7", "utf-7"),
        ("x-unicode-2-0-utf-7", "utf-7"),
        ("iso-8859-8-i", "iso8859-8"),
        ("ISO-8859-8-E", "iso8859-8"),
        ("iso-8859-6-i", "iso8859-6"),
        ("iso-8859-6-e", "iso8859-6"),
        ("x-mac-cyrillic", "mac-cyrillic"),
        ("x-mac-roman", "mac-roman"),
        ("macintosh", "mac-roman"),
        ("cp-850", "cp850"),
        ("windows-1251", "cp1251"),
        ("koi8-r", "koi8-r"),
        ("x-unknown", None),
        ("136", None),
        ("x-foo", None),
        ("base64", None),
        ("", None),
        (None, None),
    ],
)
def test_codec_for_labels(label, codec):
    assert charsets.codec_for(label) == codec


@pytest.mark.parametrize(
    ("data", "label", "expected"),
    [
        ("안녕하세요 똠방각하".encode("cp949"), "ks_c_5601-1987", "안녕하세요 똠방각하"),
        ("ภาษาไทย ฿".encode("cp874"), "TIS-620", "ภาษาไทย ฿"),
        ("香港 𨋢".encode("big5hkscs"), "big5", "香港 𨋢"),
        ("Ça coûte 5 €".encode("cp1252"), "windows-1252", "Ça coûte 5 €"),
        ("שלום עולם".encode("iso8859-8"), "iso-8859-8-i", "שלום עולם"),
        ("مرحبا".encode("iso8859-6"), "iso-8859-6-e", "مرحبا"),
        ("日本語のメール".encode("euc_jp"), "x-euc-jp", "日本語のメール"),
        ("Привет, мир".encode("mac_cyrillic"), "x-mac-cyrillic", "Привет, мир"),
        ("Grüße €".encode("utf-16-be"), "iso-10646-ucs-2", "Grüße €"),
        ("日本語".encode("iso2022_jp"), "_iso-2022-jp$ESC", "日本語"),
        (b"plain", "136", "plain"),
    ],
)
def test_decode_supersets(data, label, expected):
    assert charsets.decode(data, label) == (expected, None)


def test_undecodable_bytes_fall_back_with_defect():
    text, defect = charsets.decode(b"\x81\xfe\xff\x00abc", "utf-8")
    assert "abc" in text
    assert defect is not None


def test_label_garbage_with_legacy_bytes_is_detected():
    data = "Привет! Это письмо в кодировке windows-1251, и оно довольно длинное.".encode("cp1251")
    text, defect = charsets.decode(data, "136")
    assert defect is not None and "detected" in defect
    assert "письмо в кодировке" in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?UTF-8?B?SGVsbG8g?= =?UTF-8?Q?W=C3=B6rld?=", "Hello Wörld"),
        ("=?utf-8?q?caf=C3?=\n =?utf-8?q?=A9?=", "café"),
        ("Re: =?iso-8859-1?q?=E9t=E9?= and more", "Re: été and more"),
        ("=?UTF-8?B?w7xiZXI?=", "über"),
        ("=?utf-8?q?spaces inside?=", "spaces inside"),
        ("=?utf-8?x?unknown?=", "=?utf-8?x?unknown?="),
        ("=?gb2312?B?1tDOxA==?= =?ks_c_5601-1987?B?x9Gx2w==?=", "中文한글"),
    ],
)
def test_header_text(raw, expected):
    assert charsets.header_text(raw)[0] == expected


def test_raw_8bit_headers_use_the_body_charset():
    raw = (
        "From: Søren Ægir <soren@x.dk>\nSubject: Ærlig talt – €\n"
        "Content-Type: text/plain; charset=iso-8859-1\n\nhej\n"
    ).encode("cp1252")
    mail = parse(raw)
    assert mail.sender == Address("Søren Ægir", "soren@x.dk")
    assert mail.subject == "Ærlig talt – €"


def test_encoded_comma_in_display_name_does_not_split_the_address():
    mail = parse(b"From: =?utf-8?q?Doe=2C_J=C3=BCrgen?= <J@X.com>\nTo: a@b.c\nTo: d@e.f\n\nhi\n")
    assert mail.sender == Address("Doe, Jürgen", "J@x.com")
    assert [a.address for a in mail.to] == ["a@b.c", "d@e.f"]


@pytest.mark.parametrize("label", ["unicode_escape", "raw-unicode-escape", "punycode", "idna", "undefined"])
def test_python_codecs_no_mail_is_written_in_count_as_unknown_labels(label):
    assert charsets.codec_for(label) is None
    text, defect = charsets.decode("Grüße \\ud800".encode("utf-8"), label)
    assert text == "Grüße \\ud800" and "unknown charset" in (defect or "")


def test_decoded_text_is_storable_in_any_database():
    assert charsets.storable("a\x00b\ud800c\udcff") == "ab\ufffdc\ufffd"
    assert charsets.decode(b"a\x00b", "utf-8") == ("ab", None)
    assert charsets.header_text("=?utf-8?q?a=00b?= c\x00d")[0] == "ab cd"
