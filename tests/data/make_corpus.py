"""Generates `tests/data/corpus.txt`, the multilingual tokenizer test corpus.

Every word below was written for this project; nothing is downloaded. Each
language gets a short list of words and a few short phrases; lines are built
from them with a fixed random seed, mixed with numbers, dates, prices,
punctuation and occasional code-switching, so that the tokenizers see many
scripts, diacritics and number formats. The output is deterministic:

    python tests/data/make_corpus.py          # rewrites tests/data/corpus.txt

The lines are not meant to be grammatical; they are meant to be varied.
"""

import os
import random

# language code -> (words, phrases, sentence-final punctuation, word joiner)
# The joiner is "" for scripts written without spaces (Chinese, Japanese, Thai).
LANGUAGES = {
    "en": (
        "time year people way day man thing woman life child world school "
        "state family student group country problem hand part place case week "
        "company system program question work government number night point "
        "home water room mother area money story fact month lot right study "
        "book eye job word business issue side kind head house service friend "
        "father power hour game line end member law car city community name",
        [
            "The quick brown fox jumps over the lazy dog",
            "It's raining cats and dogs",
            "She sells sea shells by the sea shore",
            "Don't count your chickens before they hatch",
            "We'll meet at the station at noon",
            "I can't believe it's already Friday",
        ],
        ".!?",
        " ",
    ),
    "fr": (
        "maison voiture école été hiver forêt château garçon fille œuvre cœur "
        "sœur frère père mère ville pays année semaine déjà très où là-bas "
        "français élève théâtre île hôpital forêt fenêtre naïf Noël aîné "
        "bientôt peut-être aujourd'hui demain hier mûr goût être avoir",
        [
            "Le cœur a ses raisons que la raison ne connaît point",
            "Où est la gare, s'il vous plaît ?",
            "Il était une fois une petite fille",
            "C'est déjà l'été à Montréal",
            "Qu'est-ce que tu fais aujourd'hui ?",
        ],
        ".!?",
        " ",
    ),
    "de": (
        "Straße Mädchen Käse Brötchen Übung Größe Fußball schön müde grün "
        "Hände Bäume Vögel fröhlich Tür Schlüssel Frühstück Öl Ärger "
        "Donaudampfschifffahrtsgesellschaft Haus Arbeit Zeit Jahr Stadt Welt "
        "Kinder Wasser heißen weiß süß Mäuse Bücher Lösung Gemüse über",
        [
            "Der Zug fährt um halb acht ab",
            "Ich weiß nicht, was soll es bedeuten",
            "Wir gehen morgen ins Schwimmbad",
            "Die Straßenbahn ist heute überfüllt",
            "Übung macht den Meister",
        ],
        ".!?",
        " ",
    ),
    "es": (
        "niño niña mañana año corazón canción árbol ratón jardín camión "
        "español pequeño señor señora ciudad país café azúcar también "
        "aquí allí música fácil difícil útil lápiz búho pingüino cigüeña "
        "montaña río mar cielo tierra fuego amigo familia trabajo",
        [
            "¿Dónde está la biblioteca?",
            "¡Qué bonito día hace hoy!",
            "El niño come una manzana en el jardín",
            "Mañana vamos a la playa con mis amigos",
            "El pingüino vive en el sur",
        ],
        ".!?",
        " ",
    ),
    "pt": (
        "coração canção irmão irmã pão mãe avô avó você também atenção "
        "ação informação português cidade país água café chá manhã noite "
        "trabalho família amigo escola rua praia história música lição "
        "órfão difícil fácil útil pássaro árvore",
        [
            "Não há nada como um dia de sol",
            "A canção do meu avô é bonita",
            "Vamos à praia amanhã de manhã?",
            "O pão de queijo está quentinho",
        ],
        ".!?",
        " ",
    ),
    "pl": (
        "źdźbło żółć gęś jaźń łódź książka dziękuję proszę cześć miłość "
        "przyjaciel szkoła miasto kraj rok tydzień dzień noc woda chleb "
        "mleko ręka głowa serce ściana łóżko pięć sześć dziewięć zielony "
        "żółty czerwony",
        [
            "Zażółć gęślą jaźń",
            "W Szczebrzeszynie chrząszcz brzmi w trzcinie",
            "Dzień dobry, jak się masz?",
            "Idę do sklepu po chleb i mleko",
        ],
        ".!?",
        " ",
    ),
    "cs": (
        "řeka město škola dítě žena muž čas rok den noc voda chléb pivo "
        "hrad srdce kniha přítel ulice náměstí dřevo ryba kůň čtyři pět "
        "šest sedm osm devět deset červený modrý zelený žlutý",
        [
            "Příliš žluťoučký kůň úpěl ďábelské ódy",
            "Strč prst skrz krk",
            "Dobrý den, jak se máte?",
        ],
        ".!?",
        " ",
    ),
    "tr": (
        "ılık ışık iğne İstanbul ağaç çiçek şehir güneş gün gece yıl "
        "öğrenci öğretmen okul kitap defter kalem arkadaş aile ev su ekmek "
        "çay kahve güzel büyük küçük sıcak soğuk ılgın dağ deniz",
        [
            "Pijamalı hasta yağız şoföre çabucak güvendi",
            "İstanbul'da hava bugün çok güzel",
            "Çay içmeye gelir misin?",
        ],
        ".!?",
        " ",
    ),
    "vi": (
        "Việt Nam tiếng nước người nhà trường học sinh thầy cô bạn bè "
        "phở bánh mì cà phê sữa đá thành phố Hà Nội Sài Gòn mưa nắng "
        "đường xe máy hôm nay ngày mai tháng năm giờ phút",
        [
            "Tôi yêu tiếng Việt",
            "Hôm nay trời đẹp quá",
            "Bạn có khỏe không?",
            "Chúng tôi đi ăn phở ở Hà Nội",
        ],
        ".!?",
        " ",
    ),
    "is": (
        "þú þeir því það ég við hús bók maður kona barn dagur nótt vatn "
        "fjall jökull eldfjall sól tungl ár vika gleði ást borg land sjór "
        "fiskur hestur kýr",
        [
            "Þetta reddast",
            "Góðan daginn, hvernig hefurðu það?",
            "Eyjafjallajökull er eldfjall á Íslandi",
        ],
        ".!?",
        " ",
    ),
    "ro": (
        "țară școală mâine pâine fată băiat mașină oraș stradă casă "
        "prieten familie muncă apă cafea ceai soare lună an săptămână "
        "zi noapte frumos mare mic",
        [
            "Mâine mergem la școală",
            "Șoseaua e plină de mașini",
            "Bună ziua, ce mai faceți?",
        ],
        ".!?",
        " ",
    ),
    "sw": (
        "habari rafiki nyumba shule mtoto mama baba maji chakula kazi "
        "jiji nchi mwaka siku usiku asubuhi jioni kitabu gari njia "
        "jua mvua chai sana",
        [
            "Habari za asubuhi",
            "Hakuna matata",
            "Ninakwenda sokoni kununua matunda",
        ],
        ".!?",
        " ",
    ),
    "yo": (
        # Yoruba tone marks and under-dots, written with combining marks.
        "ọmọ ilé ìwé omi oúnjẹ ọjà ọ̀rẹ́ bàbá màmá ẹ̀gbọ́n àbúrò ìlú "
        "orílẹ̀-èdè ọdún ọjọ́ alẹ́ òwúrọ̀ ìwé ọkọ̀ ọ̀nà òjò oòrùn",
        [
            "Ẹ kú àárọ̀",
            "Báwo ni o ṣe wà?",
            "Mo fẹ́ lọ sí ọjà",
        ],
        ".!?",
        " ",
    ),
    "ru": (
        "время год человек день рука дело жизнь глаз раз слово место "
        "лицо друг сторона дом вопрос город работа страна мир школа "
        "вода хлеб молоко утро вечер ночь солнце улица ёлка съезд "
        "объявление счастье щука юла яблоко",
        [
            "Съешь же ещё этих мягких французских булок, да выпей чаю",
            "Москва не сразу строилась",
            "Привет, как дела?",
            "Я люблю читать книги по вечерам",
        ],
        ".!?",
        " ",
    ),
    "uk": (
        "їжак ґанок євро пісня мова місто село рік день ніч вода хліб "
        "молоко сонце вулиця школа друг родина робота країна світ "
        "кохання сім'я з'їзд подвір'я",
        [
            "Чуєш їх, доцю, га? Кумедна ж ти, прощайся без ґольфів!",
            "Добрий день, як справи?",
            "Київ — столиця України",
        ],
        ".!?",
        " ",
    ),
    "el": (
        "καλημέρα ευχαριστώ σπίτι σχολείο παιδί γυναίκα άντρας χρόνος "
        "μέρα νύχτα νερό ψωμί θάλασσα ήλιος φεγγάρι πόλη χώρα φίλος "
        "οικογένεια δουλειά βιβλίο ψυχή ΑΘΗΝΑ Ελλάδα ΐ ΰ ς",
        [
            "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία",
            "Τι κάνεις σήμερα;",
            "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας",
        ],
        ".!;",
        " ",
    ),
    "ar": (
        "مرحبا شكرا بيت مدرسة طفل امرأة رجل وقت يوم ليل ماء خبز بحر شمس "
        "قمر مدينة بلد صديق عائلة عمل كتاب قلم سيارة طريق سوق قهوة شاي "
        "السلام عليكم الْعَرَبِيَّةُ",
        [
            "صباح الخير، كيف حالك؟",
            "أنا أحب القراءة في المساء",
            "ذهبت إلى السوق لشراء الخبز",
        ],
        ".!؟",
        " ",
    ),
    "fa": (
        "سلام کتاب خانه مدرسه بچه زن مرد زمان روز شب آب نان دریا خورشید "
        "ماه شهر کشور دوست خانواده کار چای گل باغ پنجره یک دو سه",
        [
            "روز بخیر، حال شما چطور است؟",
            "من چای را دوست دارم",
            "تهران پایتخت ایران است",
        ],
        ".!؟",
        " ",
    ),
    "ur": (
        "پاکستان کتاب گھر اسکول بچہ عورت آدمی وقت دن رات پانی روٹی دوست "
        "خاندان کام چائے شہر ملک",
        [
            "آپ کیسے ہیں؟",
            "مجھے اردو پسند ہے",
        ],
        ".!؟",
        " ",
    ),
    "he": (
        "שלום תודה בית ספר ילד אישה איש זמן יום לילה מים לחם ים שמש ירח "
        "עיר ארץ חבר משפחה עבודה ספר עט מכונית דרך שוק קפה תה",
        [
            "בוקר טוב, מה שלומך?",
            "אני אוהב לקרוא ספרים",
            "ירושלים היא עיר עתיקה",
            "שָׁלוֹם עֲלֵיכֶם",
        ],
        ".!?",
        " ",
    ),
    "hi": (
        "नमस्ते धन्यवाद घर विद्यालय बच्चा महिला आदमी समय दिन रात पानी "
        "रोटी समुद्र सूरज चाँद शहर देश दोस्त परिवार काम किताब कलम गाड़ी "
        "रास्ता बाज़ार चाय हिन्दी भारत क्षत्रिय ज्ञान",
        [
            "आप कैसे हैं?",
            "मुझे हिन्दी पढ़ना पसंद है",
            "आज मौसम बहुत अच्छा है",
        ],
        "।!?",
        " ",
    ),
    "mr": (
        "मराठी महाराष्ट्र पुणे मुंबई घर शाळा मुलगा मुलगी पाणी भाकरी मित्र "
        "काम पुस्तक",
        [
            "तुम्ही कसे आहात?",
            "मला मराठी आवडते",
        ],
        "।!?",
        " ",
    ),
    "bn": (
        "বাংলা নমস্কার ধন্যবাদ বাড়ি বিদ্যালয় শিশু মহিলা পুরুষ সময় দিন রাত "
        "জল ভাত সমুদ্র সূর্য চাঁদ শহর দেশ বন্ধু পরিবার কাজ বই কলম",
        [
            "আপনি কেমন আছেন?",
            "আমি বাংলায় গান গাই",
            "ঢাকা বাংলাদেশের রাজধানী",
        ],
        "।!?",
        " ",
    ),
    "ta": (
        "தமிழ் வணக்கம் நன்றி வீடு பள்ளி குழந்தை பெண் ஆண் நேரம் நாள் இரவு "
        "தண்ணீர் சோறு கடல் சூரியன் நிலா நகரம் நாடு நண்பன் குடும்பம் வேலை "
        "புத்தகம்",
        [
            "நீங்கள் எப்படி இருக்கிறீர்கள்?",
            "எனக்கு தமிழ் பிடிக்கும்",
            "சென்னை ஒரு பெரிய நகரம்",
        ],
        ".!?",
        " ",
    ),
    "th": (
        "สวัสดี ขอบคุณ บ้าน โรงเรียน เด็ก ผู้หญิง ผู้ชาย เวลา วัน กลางคืน "
        "น้ำ ข้าว ทะเล ดวงอาทิตย์ ดวงจันทร์ เมือง ประเทศ เพื่อน ครอบครัว "
        "งาน หนังสือ กรุงเทพ อร่อย",
        [
            "สวัสดีครับ คุณสบายดีไหม",
            "ฉันชอบกินข้าวผัด",
            "วันนี้อากาศดีมาก",
        ],
        "!? ",
        "",
    ),
    "zh": (
        "你好 谢谢 家 学校 孩子 女人 男人 时间 今天 明天 昨天 晚上 水 米饭 "
        "大海 太阳 月亮 城市 国家 朋友 家庭 工作 书 笔 汽车 道路 市场 "
        "咖啡 茶 北京 上海 中文 學習 漢字 臺灣 電腦",
        [
            "今天天气很好",
            "我喜欢学习中文",
            "北京是中国的首都",
            "你吃饭了吗？",
        ],
        "。！？",
        "",
    ),
    "ja": (
        "こんにちは ありがとう 家 学校 子供 女性 男性 時間 今日 明日 夜 "
        "水 ご飯 海 太陽 月 町 国 友達 家族 仕事 本 ペン 車 道 市場 "
        "コーヒー お茶 東京 日本語 カタカナ ひらがな ｶﾀｶﾅ",
        [
            "今日はいい天気ですね",
            "私は日本語を勉強しています",
            "東京駅で会いましょう",
        ],
        "。！？",
        "",
    ),
    "ko": (
        "안녕하세요 감사합니다 집 학교 아이 여자 남자 시간 오늘 내일 밤 물 "
        "밥 바다 태양 달 도시 나라 친구 가족 일 책 펜 자동차 길 시장 "
        "커피 차 서울 한국어",
        [
            "오늘 날씨가 정말 좋네요",
            "저는 한국어를 공부하고 있어요",
            "서울은 아름다운 도시입니다",
        ],
        ".!?",
        " ",
    ),
    "hy": (
        "բարեւ շնորհակալություն տուն դպրոց երեխա կին տղամարդ ժամանակ օր "
        "գիշեր ջուր հաց ծով արեւ լուսին քաղաք երկիր ընկեր ընտանիք աշխատանք "
        "գիրք Երեւան",
        [
            "Բարի լույս, ինչպես եք?",
            "Երեւանը Հայաստանի մայրաքաղաքն է",
        ],
        ".!?",
        " ",
    ),
    "ka": (
        "გამარჯობა მადლობა სახლი სკოლა ბავშვი ქალი კაცი დრო დღე ღამე წყალი "
        "პური ზღვა მზე მთვარე ქალაქი ქვეყანა მეგობარი ოჯახი სამუშაო წიგნი "
        "თბილისი",
        [
            "დილა მშვიდობისა, როგორ ხარ?",
            "თბილისი საქართველოს დედაქალაქია",
        ],
        ".!?",
        " ",
    ),
    "am": (
        "ሰላም አመሰግናለሁ ቤት ትምህርት ቤት ልጅ ሴት ወንድ ጊዜ ቀን ሌሊት ውሃ "
        "እንጀራ ባህር ፀሐይ ጨረቃ ከተማ ሀገር ጓደኛ ቤተሰብ ሥራ መጽሐፍ አዲስ አበባ",
        [
            "እንደምን አደርክ?",
            "አዲስ አበባ ትልቅ ከተማ ናት",
        ],
        "።!?",
        " ",
    ),
}

# Shared, script-neutral material: code-switching, numbers, symbols.
MIXED_LINES = [
    "Email: info@example.com — tel. +1 (555) 010-4477, ext. 12",
    "Visit https://example.org/path?q=tokenizer&lang=ja#section-2 today!",
    "C'est 3,14 € ; das sind 2.718,28 € ; 1,000,000 ¥ ; ₹ 4,50,000",
    "Temperature: −12.5 °C … 37 °F (±0.5)",
    "Math: ∑ x² + √y ≤ ∞, α β γ δ, ∀x∈ℝ: x ≥ 0",
    "Code: def f(x): return x**2  # squares",
    "Smileys: 😀 😂 🤖 👍🏽 🇯🇵 🇺🇦 ❤️ 👨‍👩‍👧‍👦",
    "Fullwidth: ＡＢＣ１２３ ｱｲｳ ㈱ ① ⅷ ﬁ ﬂ",
    "Quotes: «guillemets» „Anführungszeichen“ “curly” ‘single’ 「括弧」",
    "Tabs\tand\tspaces   and    more",
    "Zero\u200bwidth\u200cjoiner\u200dtest\ufeffBOM",
    "Combining: e\u0301 a\u0300 o\u0302 n\u0303 u\u0308 (decomposed) vs é à ô ñ ü",
    "Hebrew with niqqud: \u05e9\u05c1\u05b8\u05dc\u05d5\u05b9\u05dd and Arabic tashkil: \u0645\u064e\u0631\u0652\u062d\u064e\u0628\u064b\u0627",
    "Devanagari conjuncts: क्ष त्र ज्ञ श्र द्ध",
    "Mixed: Hello мир 世界 عالم עולם κόσμος दुनिया 세계",
    "UPPER lower MiXeD CamelCaseWords snake_case kebab-case",
    "Roman numerals: XIV, MMXXIV; ordinals: 1st 2nd 3rd 4th",
    "Dates: 2024-02-29, 29/02/2024, 29.02.2024, Feb 29, 2024, 令和6年2月29日",
    "Times: 23:59:59, 11:05 p.m., 07h30",
    "Ellipsis... and dashes -- — – and slashes / \\ |",
]

NUMBER_FORMATS = [
    lambda r: str(r.randint(0, 99)),
    lambda r: str(r.randint(100, 99999)),
    lambda r: f"{r.randint(1, 999)},{r.randint(0, 999):03d}",
    lambda r: f"{r.uniform(0, 1000):.2f}",
    lambda r: f"{r.randint(1, 28):02d}.{r.randint(1, 12):02d}.{r.randint(1900, 2099)}",
    lambda r: f"{r.randint(1900, 2099)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}",
    lambda r: f"{r.randint(1, 100)}%",
    lambda r: f"${r.randint(1, 500)}.{r.randint(0, 99):02d}",
    lambda r: f"#{r.randint(1, 9999)}",
]

INNER_PUNCTUATION = [",", ";", ":", " -", " (", ")", " \"", "\"", " '"]

LINES_PER_LANGUAGE = 38


def _make_line(rng, words, phrases, final_punct, joiner):
    parts = []
    if rng.random() < 0.45:
        parts.append(rng.choice(phrases))
    for _ in range(rng.randint(3, 14)):
        roll = rng.random()
        if roll < 0.12:
            parts.append(rng.choice(NUMBER_FORMATS)(rng))
        elif roll < 0.2 and parts:
            parts[-1] = parts[-1] + rng.choice(INNER_PUNCTUATION)
        else:
            parts.append(rng.choice(words))
    if rng.random() < 0.08:
        # A little code-switching into English or a neighbouring language.
        parts.append(rng.choice(LANGUAGES["en"][0].split()))
    # Space-less scripts still put spaces around numbers now and then.
    sep = joiner if rng.random() < 0.8 else " "
    line = sep.join(parts).strip()
    if rng.random() < 0.1:
        line = line[:1].upper() + line[1:]
    return line + rng.choice(final_punct).strip()


def make_corpus(seed=1234):
    rng = random.Random(seed)
    lines = []
    for code, (words, phrases, final_punct, joiner) in LANGUAGES.items():
        word_list = words.split()
        for _ in range(LINES_PER_LANGUAGE):
            lines.append(_make_line(rng, word_list, phrases, final_punct, joiner))
        lines.extend(phrases)
    lines.extend(MIXED_LINES)
    # Multilingual lines: one clause from each of several languages.
    codes = sorted(LANGUAGES)
    for _ in range(60):
        picked = rng.sample(codes, rng.randint(2, 4))
        clauses = []
        for code in picked:
            words, phrases, final_punct, joiner = LANGUAGES[code]
            clauses.append(_make_line(rng, words.split(), phrases, final_punct, joiner))
        lines.append(" ".join(clauses))
    rng.shuffle(lines)
    # One line per sentence: strip any newline/tab that slipped in (the tab line
    # is kept on purpose; lines themselves must not contain "\n").
    return [line.replace("\n", " ") for line in lines if line.strip()]


def main():
    lines = make_corpus()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus.txt")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    print(f"wrote {len(lines)} lines, {os.path.getsize(path)} bytes to {path}")


if __name__ == "__main__":
    main()
