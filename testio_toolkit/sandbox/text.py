# ruff: noqa: RUF001 -- look-alike characters (en dashes, dotless i) are the point here
"""Words the generator builds names and texts from.

Real accounts are multilingual: titles mix German, Japanese, Russian, Chinese, French and
Spanish, carry emoji (some outside the Basic Multilingual Plane, some joined by ZWJ or made
of regional indicators), and now and then characters that break naive HTML or CSV
handling (quotes, ``&``, ``<``). The pools below are tuples of plain strings so that
generated objects can share them without sharing anything mutable.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

_T = TypeVar("_T")

__all__ = [
    "BROWSERS",
    "CATEGORIES",
    "DEVICES",
    "ENVIRONMENTS",
    "FEATURE_NAMES",
    "OPERATING_SYSTEMS",
    "PRODUCT_TYPES",
    "SECTION_NAMES",
    "USERS",
    "Dice",
    "bug_title",
    "comment",
    "out_of_scope",
    "paragraph",
    "product_name",
    "steps",
    "test_title",
    "user_story",
]


class Dice(random.Random):
    """A Random with cheap ``pick`` and ``between`` (choice and randint cost ~5x more).

    The generator makes millions of draws for the large preset; these two are enough for
    all of them that need no weights.
    """

    def pick(self, seq: Sequence[_T]) -> _T:
        """A uniformly chosen element of a non-empty sequence."""
        return seq[int(self.random() * len(seq))]

    def between(self, low: int, high: int) -> int:
        """A uniformly chosen integer in ``[low, high]``."""
        return low + int(self.random() * (high - low + 1))


PRODUCT_TYPES = ("website", "website", "mobile_app_ios", "mobile_app_android", "streaming_app")

_PRODUCT_STEMS = (
    "Flourish",
    "Canvas Studio",
    "Zugspitze Bank",
    "東京メトロ",
    "Ростелеком",
    "Café Crème",
    "Nordlicht Reisen",
    "Señor Taco",
    "北京外卖",
    "Müller & Söhne",
    "Øresund Ferries",
    "Smørrebrød Club",
    "Łódź Transit",
    "São Paulo Pay",
    "İstanbul Market",
    "Ελληνικό Radio",
    "Kraków Kino",
    "Bäckerei Blum",
    "Sakura Mobile",
    "Volga Cloud",
)
_PRODUCT_SUFFIXES = ("", " App", " Web", " Shop", " 2.0", " (Staging)", " 🚀", " Kids", " Pro")

SECTION_NAMES = (
    "Checkout",
    "Onboarding",
    "Mein Konto",
    "マイページ",
    "Каталог",
    "Paiement",
    "Admin 🛠️",
    "Search & Browse",
    "Player",
    "Loyalty",
)

FEATURE_NAMES = (
    "Login",
    "Registrierung",
    "Checkout",
    "Warenkorb",
    "Suche",
    "Produktseite",
    "Profil bearbeiten",
    "Zahlungsarten",
    "Newsletter",
    "Onboarding",
    "ログイン",
    "購入フロー",
    "Поиск",
    "Корзина",
    "Paiement sécurisé",
    "Recherche avancée",
    "Carrito de compra",
    "搜索",
    "购物车",
    "Push notifications 🔔",
    "Dark mode 🌙",
    "Offline mode",
    "Screen reader support ♿",
    "Video player ▶️",
    "Wishlist ❤️",
    'Coupons "Sommer-Sale"',
    "Terms & Conditions",
    "Store locator 📍",
    "Chat support 💬",
    "Order history",
)

USERS = (
    "anna.k",
    "jörg.müller",
    "li.wei",
    "sergei_p",
    "maría.garcía",
    "olu.adeyemi",
    "priya.s",
    "tanaka.yuki",
    "zoë.b",
    "lars.øster",
    "fatma.yılmaz",
    "nguyễn.an",
    "chloé.d",
    "csm-bot",
    "Ирина",
    "王芳",
)

ENVIRONMENTS = (
    "Production",
    "Staging",
    "Staging – EU 🇪🇺",
    "Pre-release build",
    "TestFlight 4.2",
    "Play Store beta",
    "UAT (Kunde)",
    "本番環境",
)

OPERATING_SYSTEMS = (
    ("Android", ("12", "13", "14", "15")),
    ("iOS", ("16.7", "17.2", "17.5", "18.0")),
    ("Windows", ("10", "11")),
    ("macOS", ("13 Ventura", "14 Sonoma", "15 Sequoia")),
    ("Linux", ("Ubuntu 22.04", "Fedora 40")),
)
CATEGORIES = ("Smartphones", "Tablets", "Computers", "Smart TVs", "Wearables")
BROWSERS = ("Chrome", "Firefox", "Safari", "Edge", "Samsung Internet", "Opera")
DEVICES = (
    "iPhone 15 Pro",
    "iPhone SE (2022)",
    "Samsung Galaxy S23",
    "Google Pixel 8",
    "Xiaomi Redmi Note 12",
    "iPad Air (5th gen)",
    "Lenovo ThinkPad T14",
    "MacBook Air M2",
    "LG OLED C3",
    "Fire TV Stick 4K",
)

_TITLE_TEMPLATES = (
    "{feature} regression {ver}",
    "Release {ver} – {feature}",
    "{feature}: exploratory test {emoji}",
    "Smoke test {ver} {emoji}",
    "Relaunch {feature} — «Sommer»",
    "回归测试 {ver}",
    "Тест: {feature} {ver}",
    "Prüfung {feature} (Sprint {n})",
    "テスト {feature} {ver}",
    'Q&A "{feature}" <beta>',
    "Café checkout – déjà vu {n}",
    "Niño's onboarding {emoji}",
    "{feature} {flag} localisation",
    "Focus: {feature} / {feature2}",
    "Coverage {ver}",
)
_EMOJI = ("🚀", "🛒", "📱", "✅", "🐞", "🔥", "👩‍💻", "🧪", "🎉", "⚡")
_FLAGS = ("🇩🇪", "🇯🇵", "🇫🇷", "🇧🇷", "🇺🇦", "🇮🇳")

_BUG_PROBLEMS = (
    "button does nothing on tap",
    "Fehlermeldung bei leerem Feld fehlt",
    "テキストが切れて表示される",
    "страница не загружается",
    "le prix affiché est incorrect",
    "el total no se actualiza",
    "页面崩溃",
    "app crashes after rotation 💥",
    "layout broken in dark mode",
    "typo in heading: 'Warenkrob'",
    'label shows raw HTML "<b>Sale</b>"',
    "screen reader reads nothing",
    "infinite spinner after payment",
    "emoji 😀 rendered as □",
    "wrong currency € instead of £",
)

_SENTENCES = (
    "Please focus on the purchase funnel from the product page to the confirmation screen.",
    "Bitte testen Sie die Registrierung mit echten E-Mail-Adressen.",
    "新しい決済フローを重点的にテストしてください。",
    "Проверьте корзину и оформление заказа на мобильных устройствах.",
    "Merci de vérifier l'affichage des prix et des réductions.",
    "Por favor, revise el proceso de pago con tarjetas de prueba.",
    "请重点测试搜索和筛选功能。",
    "Use the test credentials from the instructions; do not use real cards 💳.",
    "Known issues are listed below and must not be reported again.",
    "Report visual issues only on the redesigned pages ✨.",
    "Network throttling (3G) is in scope for this cycle.",
    'Content bugs such as "Lorem ipsum" placeholders are welcome.',
)
_OUT_OF_SCOPE = (
    "Performance and load testing.",
    "Der Admin-Bereich ist nicht Teil des Tests.",
    "Legacy checkout (v1) & third-party widgets.",
    "管理画面はテスト対象外です。",
    "Security testing / penetration testing.",
    "",
)
_STEP_TEMPLATES = (
    "Open the menu ☰",
    "Tap „Weiter“",
    "Enter 'Jörg Müller' as name",
    "Scroll to the bottom",
    "Rotate the device 🔄",
    "Select the 2nd item",
    "ボタンを押す",
    "Нажмите «Оплатить»",
    "Wait 10 seconds",
    "Go back with the system back button",
)
_COMMENTS = (
    "Please add a screen recording.",
    "Reproduced on a second device 👍",
    "Kann ich nicht reproduzieren.",
    "再現できました。",
    "Duplicate of an earlier report?",
    "Fixed in build 4.2.1 – please verify.",
)
_STORY_TEMPLATES = (
    "As a shopper I can {verb} so that I save time",
    "Als Nutzer:in möchte ich {verb}",
    "ユーザーとして{verb}ことができる",
    "Как клиент, я могу {verb}",
)
_STORY_VERBS = (
    "pay with PayPal",
    "reset my password",
    "filter by price",
    "share a wishlist",
    "change the language",
)


def product_name(rng: Dice, index: int) -> str:
    """A product name; ``index`` keeps names of one account distinct."""
    stem = _PRODUCT_STEMS[index % len(_PRODUCT_STEMS)]
    suffix = rng.pick(_PRODUCT_SUFFIXES)
    lap = index // len(_PRODUCT_STEMS)
    return f"{stem}{suffix}" + (f" #{lap + 1}" if lap else "")


def test_title(rng: Dice) -> str:
    """A test-cycle title in one of several languages, often with emoji."""
    template = rng.pick(_TITLE_TEMPLATES)
    return template.format(
        feature=rng.pick(FEATURE_NAMES),
        feature2=rng.pick(FEATURE_NAMES),
        ver=f"{rng.between(1, 9)}.{rng.between(0, 30)}",
        n=rng.between(1, 60),
        emoji=rng.pick(_EMOJI),
        flag=rng.pick(_FLAGS),
    )


def bug_title(rng: Dice, feature: str) -> str:
    """A bug title naming the feature it was found in."""
    return f"{feature}: {rng.pick(_BUG_PROBLEMS)}"


def paragraph(rng: Dice, sentences: int) -> str:
    """Some sentences of instructions, separated by newlines."""
    return "\n".join(rng.pick(_SENTENCES) for _ in range(sentences))


def out_of_scope(rng: Dice) -> str:
    """The out-of-scope text of a test; sometimes empty."""
    return rng.pick(_OUT_OF_SCOPE)


def steps(rng: Dice) -> list[str]:
    """Steps to reproduce a bug."""
    return [rng.pick(_STEP_TEMPLATES) for _ in range(rng.between(2, 6))]


def comment(rng: Dice) -> str:
    """A comment on a bug."""
    return rng.pick(_COMMENTS)


def user_story(rng: Dice) -> str:
    """A user story of a feature."""
    return rng.pick(_STORY_TEMPLATES).format(verb=rng.pick(_STORY_VERBS))
