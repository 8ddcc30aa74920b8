"""quotes.new_text(): the new part of realistic replies."""

import pytest

from maildesk.mail.quotes import REPLY_ABOVE_MARKER, new_text

CASES = {
    "our marker": (
        f"Yes, please cancel it.\n\n{REPLY_ABOVE_MARKER}\n\nTicket #1042: your order\nHello Ann, ...",
        "Yes, please cancel it.",
    ),
    "marker quoted under gmail header": (
        "Thanks, that fixed it!\n\nOn Tue, Mar 5, 2024 at 9:00 AM Example Support <support@example.com> wrote:\n\n"
        f"> {REPLY_ABOVE_MARKER}\n>\n> Hello, try restarting.\n",
        "Thanks, that fixed it!",
    ),
    "gmail header wrapped over two lines": (
        "Still broken.\n\nOn Tue, Mar 5, 2024 at 9:00 AM Example Support <\nsupport@example.com> wrote:\n\n"
        "> Did the restart help?\n",
        "Still broken.",
    ),
    "apple mail": (
        "Perfect, thank you.\n\nSent from my iPhone\n\n> On 5 Mar 2024, at 09:00, Support <support@example.com> wrote:\n"
        ">\n> Your refund is on its way.\n",
        "Perfect, thank you.",
    ),
    "german attribution": (
        "Hallo,\n\ndas Problem besteht weiterhin.\n\nGruß\nKlaus\n\n"
        "Am Di., 5. März 2024 um 09:00 Uhr schrieb Support <support@example.com>:\n> Bitte prüfen Sie ...\n",
        "Hallo,\n\ndas Problem besteht weiterhin.\n\nGruß\nKlaus",
    ),
    "french attribution": (
        "Bonjour,\nc'est réglé, merci.\n\nLe mar. 5 mars 2024 à 09:00, Support <support@example.com> a écrit :\n"
        "> Bonjour ...\n",
        "Bonjour,\nc'est réglé, merci.",
    ),
    "spanish attribution wrapped": (
        "Gracias.\n\nEl mar, 5 mar 2024 a las 9:00, Example Support (<support@example.com>)\nescribió:\n\n> Hola\n",
        "Gracias.",
    ),
    "indonesian attribution": (
        "Terima kasih, sudah beres.\n\nPada tanggal Sel, 5 Mar 2024 pukul 09.00 Support <support@example.com> menulis:\n"
        "> Halo ...\n",
        "Terima kasih, sudah beres.",
    ),
    "outlook original message": (
        "Please see my answer below.\n\nRegards,\nPeter\n\n-----Original Message-----\nFrom: Support\n"
        "Sent: Tuesday, March 5, 2024 9:00 AM\nTo: Peter\nSubject: RE: Ticket\n\nHello Peter\n",
        "Please see my answer below.\n\nRegards,\nPeter",
    ),
    "outlook german separator": (
        "Danke!\n\n-----Ursprüngliche Nachricht-----\nVon: Support <support@example.com>\nGesendet: Dienstag, 5. März 2024 09:00\n"
        "An: Klaus\nBetreff: AW: Ticket\n",
        "Danke!",
    ),
    "outlook french separator": (
        "Merci.\n\n-----Message d'origine-----\nDe : Support\nEnvoyé : mardi 5 mars 2024 09:00\nÀ : Luc\nObjet : Ticket\n",
        "Merci.",
    ),
    "outlook header block without separator": (
        "Works now.\n\n________________________________\nFrom: Example Support <support@example.com>\n"
        "Sent: Tuesday, March 5, 2024 9:00 AM\nTo: Dana <dana@x.com>\nSubject: Re: login\n\nHi Dana,\n",
        "Works now.",
    ),
    "outlook bold header block": (
        "See attached.\n\n*From:* Support [mailto:support@example.com]\n*Sent:* Tuesday, March 5, 2024 9:00 AM\n"
        "*To:* Eve\n*Subject:* Ticket\n\nHello Eve\n",
        "See attached.",
    ),
    "german header block": (
        "Erledigt.\n\nVon: Support <support@example.com>\nGesendet: Dienstag, 5. März 2024 09:00\nAn: Uwe\n"
        "Betreff: Ticket\n\nHallo Uwe\n",
        "Erledigt.",
    ),
    "french header block": (
        "Ok pour moi.\n\nDe : Support <support@example.com>\nEnvoyé : mardi 5 mars 2024 09:00\nÀ : Luc\n"
        "Objet : Ticket\n",
        "Ok pour moi.",
    ),
    "indonesian header block": (
        "Baik.\n\nDari: Support <support@example.com>\nDikirim: Selasa, 05 Maret 2024 09.00\nKepada: Budi\n"
        "Perihal: Tiket\n",
        "Baik.",
    ),
    "trailing quote without header": (
        "Agreed.\n\n> Shall we close the ticket?\n> Support\n",
        "Agreed.",
    ),
    "signature delimiter": (
        "The printer is on floor 3.\n\n-- \nJane Roe | ACME Corp\n+1 555 0100\n",
        "The printer is on floor 3.",
    ),
    "signature without space": ("Call me back please.\n--\nBob\nSales\n", "Call me back please."),
    "get outlook tail": ("On my way.\n\nGet Outlook for iOS\n", "On my way."),
    "german mobile tail": ("Passt.\n\nVon meinem iPhone gesendet\n", "Passt."),
    "interleaved reply": (
        "On Tue, Mar 5, 2024 at 9:00 AM Support <support@example.com> wrote:\n"
        "> What is your order number?\n"
        "It is 4711.\n"
        "> Which colour did you order?\n"
        "Blue.\n\n-- \nAnn\n",
        "It is 4711.\n\nBlue.",
    ),
    "bottom post": (
        "On Tue, Mar 5, 2024, Support wrote:\n> Is it fixed?\n\nYes, all good now.\n",
        "Yes, all good now.",
    ),
    "nothing new keeps everything": (
        "On Tue, Mar 5, 2024 at 9:00 AM Support <support@example.com> wrote:\n> Hello\n",
        "On Tue, Mar 5, 2024 at 9:00 AM Support <support@example.com> wrote:\n> Hello",
    ),
    "only a signature keeps everything": ("-- \nJohn Smith\n", "-- \nJohn Smith"),
    "plain message untouched": (
        "Hello,\n\nmy order 4711 has not arrived.\nOn Monday I was told it would.\n\nThanks\n",
        "Hello,\n\nmy order 4711 has not arrived.\nOn Monday I was told it would.\n\nThanks",
    ),
    "crlf input": ("Fine.\r\n\r\nOn Tue, Bob wrote:\r\n> x\r\n", "Fine."),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_new_text(text, expected):
    assert new_text(text) == expected


def test_empty_text():
    assert new_text("") == ""
    assert new_text("   \n ") == ""
