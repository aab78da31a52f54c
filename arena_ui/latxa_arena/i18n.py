"""Every user-visible string of the arena UI, in Basque first, then Spanish and English.

One catalogue, no strings in the pages: ``t("battle.send")`` renders the string in the language the
participant picked (Basque by default). The switch happens in the browser (``rx.match`` over the
state's ``lang``), so changing language needs no page reload and no round trip per string.

This module imports nothing from Reflex so tools and tests can check the catalogue on its own.
"""

from __future__ import annotations

LANGS: tuple[str, ...] = ("eu", "es", "en")
DEFAULT_LANG = "eu"
LANG_NAMES = {"eu": "Euskara", "es": "Castellano", "en": "English"}

# key -> (eu, es, en)
CATALOGUE: dict[str, tuple[str, str, str]] = {
    # --- navigation and chrome
    "app.title": ("Ebaluatoia: euskarazko eredu-arena", "Ebaluatoia: arena de modelos en euskera", "Ebaluatoia: the Basque model arena"),
    "app.tagline": (
        "Hitz egin bi eredu anonimorekin eta esan zein den hobea.",
        "Habla con dos modelos anónimos y di cuál es mejor.",
        "Chat with two anonymous models and say which one is better.",
    ),
    "nav.battle": ("Borroka", "Batalla", "Battle"),
    "nav.leaderboard": ("Sailkapena", "Clasificación", "Leaderboard"),
    "nav.mine": ("Nire ekarpena", "Mi contribución", "My contribution"),
    "nav.about": ("Honi buruz", "Acerca de", "About"),
    "nav.login": ("Sartu", "Entrar", "Log in"),
    "nav.logout": ("Irten", "Salir", "Log out"),
    "nav.language": ("Hizkuntza", "Idioma", "Language"),
    "nav.signed_in_as": ("Saioa:", "Sesión:", "Signed in as:"),
    # --- register / log in
    "auth.login_title": ("Sartu", "Entrar", "Log in"),
    "auth.register_title": ("Izena eman", "Registrarse", "Register"),
    "auth.username": ("Erabiltzaile-izena", "Nombre de usuario", "Username"),
    "auth.password": ("Pasahitza", "Contraseña", "Password"),
    "auth.email": ("Posta elektronikoa (aukerakoa)", "Correo electrónico (opcional)", "E-mail (optional)"),
    "auth.basque_level": ("Euskara-maila", "Nivel de euskera", "Basque level"),
    "auth.education": ("Ikasketa-maila", "Nivel de estudios", "Education"),
    "auth.age_notice": (
        "{age} urte edo gehiago ditut. Gazteagoek ezin dute parte hartu.",
        "Tengo {age} años o más. Las personas más jóvenes no pueden participar.",
        "I am {age} or older. Younger people may not take part.",
    ),
    "auth.consent": (
        "Onartzen dut nire galderak, ereduen erantzunak eta nire botoak ikerketarako argitaratzea, "
        "lizentzia honekin:",
        "Acepto que mis preguntas, las respuestas de los modelos y mis votos se publiquen para investigación "
        "con esta licencia:",
        "I agree that my prompts, the models' answers and my votes are published for research under this licence:",
    ),
    "auth.accept": ("Lizentzia onartzen dut", "Acepto la licencia", "I accept the licence"),
    "auth.submit_login": ("Sartu", "Entrar", "Log in"),
    "auth.submit_register": ("Eman izena", "Registrarme", "Register"),
    "auth.to_register": ("Ez duzu konturik? Eman izena", "¿No tienes cuenta? Regístrate", "No account? Register"),
    "auth.to_login": ("Baduzu kontua? Sartu", "¿Ya tienes cuenta? Entra", "Have an account? Log in"),
    "auth.need_consent": (
        "Parte hartzeko, lizentzia onartu eta 18 urte edo gehiago dituzula berretsi behar duzu.",
        "Para participar, acepta la licencia y confirma que tienes 18 años o más.",
        "To take part, accept the licence and confirm you are 18 or older.",
    ),
    "auth.need_fields": (
        "Bete erabiltzaile-izena eta pasahitza.",
        "Rellena el nombre de usuario y la contraseña.",
        "Fill in the username and the password.",
    ),
    "auth.must_login": (
        "Borrokatzeko, sartu edo eman izena.",
        "Para batallar, entra o regístrate.",
        "Log in or register to battle.",
    ),
    "level.native": ("Ama-hizkuntza", "Lengua materna", "Native"),
    "edu.primary": ("Lehen hezkuntza", "Educación primaria", "Primary school"),
    "edu.secondary": ("Bigarren hezkuntza", "Educación secundaria", "Secondary school"),
    "edu.vocational": ("Lanbide heziketa", "Formación profesional", "Vocational training"),
    "edu.bachelor": ("Gradua", "Grado", "Bachelor's degree"),
    "edu.master": ("Masterra", "Máster", "Master's degree"),
    "edu.phd": ("Doktoretza", "Doctorado", "PhD"),
    "edu.other": ("Besterik", "Otro", "Other"),
    # --- battle
    "battle.title": ("Borroka", "Batalla", "Battle"),
    "battle.intro": (
        "Idatzi galdera bat euskaraz. Bi eredu anonimok erantzungo dute aldi berean.",
        "Escribe una pregunta en euskera. Dos modelos anónimos responderán a la vez.",
        "Write a question in Basque. Two anonymous models answer at the same time.",
    ),
    "battle.placeholder": ("Idatzi hemen zure galdera...", "Escribe aquí tu pregunta...", "Write your question here..."),
    "battle.send": ("Bidali", "Enviar", "Send"),
    "battle.new": ("Borroka berria", "Nueva batalla", "New battle"),
    "battle.model_a": ("A eredua", "Modelo A", "Model A"),
    "battle.model_b": ("B eredua", "Modelo B", "Model B"),
    "battle.you": ("Zu", "Tú", "You"),
    "battle.waiting": ("Idazten...", "Escribiendo...", "Writing..."),
    "battle.panel_error": (
        "Eredu honek ezin izan du erantzun. Besteak jarraitzen du.",
        "Este modelo no ha podido responder. El otro sigue.",
        "This model could not answer. The other one carries on.",
    ),
    "battle.panel_timeout": (
        "Eredu honek denbora gehiegi behar izan du.",
        "Este modelo ha tardado demasiado.",
        "This model took too long.",
    ),
    "battle.api_down": (
        "Arenaren zerbitzaria ez dago eskuragarri. Saiatu berriro geroago.",
        "El servidor de la arena no está disponible. Inténtalo más tarde.",
        "The arena server is not reachable. Please try again later.",
    ),
    "battle.after_vote": (
        "Eskerrik asko! Hasi borroka berri bat jarraitzeko.",
        "¡Gracias! Empieza una nueva batalla para seguir.",
        "Thank you! Start a new battle to carry on.",
    ),
    # --- vote
    "vote.title": ("Zure botoa", "Tu voto", "Your vote"),
    "vote.content": (
        "Edukia: zein erantzun da zuzenagoa eta lagungarriagoa?",
        "Contenido: ¿qué respuesta es más correcta y útil?",
        "Content: which answer is more correct and helpful?",
    ),
    "vote.language": (
        "Euskara: zein erantzunek du euskara hobea?",
        "Euskera: ¿qué respuesta tiene mejor euskera?",
        "Basque: which answer has the better Basque?",
    ),
    "vote.overall": (
        "Orokorrean: zein nahiago duzu?",
        "En general: ¿cuál prefieres?",
        "Overall: which one do you prefer?",
    ),
    "vote.a": ("A hobea", "A mejor", "A is better"),
    "vote.tie": ("Berdinketa", "Empate", "Tie"),
    "vote.b": ("B hobea", "B mejor", "B is better"),
    "vote.submit": ("Bidali botoa", "Enviar voto", "Submit vote"),
    "vote.incomplete": (
        "Erantzun galdera guztiei botoa bidali aurretik.",
        "Responde a todas las preguntas antes de enviar el voto.",
        "Answer every question before submitting the vote.",
    ),
    "vote.reveal": ("Hauek ziren ereduak:", "Estos eran los modelos:", "These were the models:"),
    "vote.failed": ("Ezin izan da botoa gorde.", "No se ha podido guardar el voto.", "The vote could not be saved."),
    # --- leaderboard
    "lb.title": ("Sailkapena", "Clasificación", "Leaderboard"),
    "lb.intro": (
        "Bradley-Terry puntuazioak %95eko konfiantza-tarteekin, dimentsio bakoitzeko. Aurrezko ahul batek "
        "(1000 ± 200) boto gutxiko ereduen puntuazioak mugatzen ditu.",
        "Puntuaciones Bradley-Terry con intervalos de confianza del 95 %, por dimensión. Una distribución a priori "
        "débil (1000 ± 200) acota las puntuaciones de los modelos con pocos votos.",
        "Bradley-Terry ratings with 95% confidence intervals, per dimension. A weak prior (1000 ± 200) keeps the "
        "ratings of models with few votes bounded.",
    ),
    "lb.dimension": ("Dimentsioa", "Dimensión", "Dimension"),
    "lb.rank": ("Postua", "Puesto", "Rank"),
    "lb.model": ("Eredua", "Modelo", "Model"),
    "lb.rating": ("Puntuazioa", "Puntuación", "Rating"),
    "lb.ci": ("%95 tartea", "Intervalo 95 %", "95% interval"),
    "lb.battles": ("Borrokak", "Batallas", "Battles"),
    "lb.total_votes": ("Boto guztiak", "Votos totales", "Total votes"),
    "lb.empty": ("Oraindik ez dago botorik.", "Todavía no hay votos.", "No votes yet."),
    "lb.hidden": (
        "Ebaluatoiak irauten duen bitartean ez da ereduen sailkapenik argitaratzen (ikerketan bezala). "
        "Emaitzak bozketa amaitzean argitaratuko dira.",
        "Mientras dura la evaluación no se publica ninguna clasificación de modelos (como en el estudio). "
        "Los resultados se publicarán al terminar.",
        "No model leaderboard is published while votes are collected (as in the study). "
        "The results are published when the evaluation ends.",
    ),
    "lb.not_enough": (
        "Oraindik ez dago boto nahikorik sailkapena erakusteko.",
        "Todavía no hay votos suficientes para mostrar la clasificación.",
        "Not enough votes yet to show the leaderboard.",
    ),
    "lb.min_battles": (
        "Eredu bat sailkapenean agertzen da gutxienez borroka hauek dituenean:",
        "Un modelo aparece en la clasificación cuando tiene al menos estas batallas:",
        "A model appears on the leaderboard once it has at least this many battles:",
    ),
    "lb.needs_more": ("Falta diren botoak", "Votos que faltan", "More votes needed"),
    "lb.waiting": ("Boto gehiagoren zain", "Esperando más votos", "Waiting for more votes"),
    "auth.need_email": (
        "Posta elektronikoa beharrezkoa da (zozketarako).",
        "El correo electrónico es obligatorio (para el sorteo).",
        "An e-mail address is required (for the raffle).",
    ),
    "auth.email_required": ("Posta elektronikoa", "Correo electrónico", "E-mail"),
    "lb.refresh": ("Eguneratu", "Actualizar", "Refresh"),
    "dim.content": ("Edukia", "Contenido", "Content"),
    "dim.language": ("Euskara", "Euskera", "Basque"),
    "dim.overall": ("Orokorra", "General", "Overall"),
    # --- my contribution
    "mine.title": ("Nire ekarpena", "Mi contribución", "My contribution"),
    "mine.votes": ("Eman dituzun botoak", "Votos que has dado", "Votes you have cast"),
    "mine.rank": ("Zure postua parte-hartzaileen artean", "Tu puesto entre los participantes", "Your standing among participants"),
    "mine.of": ("guztira", "en total", "in total"),
    "mine.thanks": (
        "Eskerrik asko euskarazko ereduak hobetzen laguntzeagatik!",
        "¡Gracias por ayudar a mejorar los modelos en euskera!",
        "Thank you for helping to improve Basque models!",
    ),
    # --- about
    "about.title": ("Honi buruz", "Acerca de", "About"),
    "about.what": (
        "Ebaluatoia euskarazko hizkuntza-ereduak giza ebaluazioz alderatzeko arena da. Galdera bakoitza bi eredu "
        "anonimori bidaltzen zaie; zuk bozkatu ondoren bakarrik ikusiko dituzu haien izenak.",
        "Ebaluatoia es una arena para comparar modelos de lenguaje en euskera mediante evaluación humana. Cada "
        "pregunta se envía a dos modelos anónimos; sus nombres solo se muestran después de votar.",
        "Ebaluatoia is an arena that compares Basque language models by human judgement. Each prompt goes to two "
        "anonymous models; their names are shown only after you vote.",
    ),
    "about.collected": ("Zer biltzen dugu", "Qué recogemos", "What we collect"),
    "about.collected_body": (
        "Zure erabiltzaile-izena, euskara-maila eta ikasketa-maila; zure galderak, ereduen erantzunak eta zure "
        "botoak. Ez dugu zure IP helbidea gordetzen, eta pasahitza hash gisa soilik gordetzen da.",
        "Tu nombre de usuario, nivel de euskera y nivel de estudios; tus preguntas, las respuestas de los modelos "
        "y tus votos. No guardamos tu dirección IP y la contraseña solo se guarda como hash.",
        "Your username, Basque level and education; your prompts, the models' answers and your votes. We do not "
        "store your IP address, and the password is stored only as a hash.",
    ),
    "about.licence": ("Lizentzia", "Licencia", "Licence"),
    "about.licence_body": (
        "Bildutako elkarrizketak eta botoak ikerketarako argitaratuko dira, izenik gabe, lizentzia honekin "
        "(arenaren zerbitzariak zehazten du):",
        "Las conversaciones y votos recogidos se publicarán para investigación, de forma anónima, con esta "
        "licencia (la fija el servidor de la arena):",
        "The collected conversations and votes will be published anonymously for research under this licence "
        "(set by the arena server):",
    ),
    "about.privacy": (
        "Ez idatzi datu pertsonalik zure galderetan. Posta elektronikoa zozketarako soilik erabiltzen da eta ez da "
        "inoiz argitaratzen.",
        "No escribas datos personales en tus preguntas. El correo solo se usa para el sorteo y nunca se publica.",
        "Do not write personal data in your prompts. The e-mail is used only for the raffle and is never published.",
    ),
    "vote.wait": ("Irakurri lasai erantzunak botoa eman aurretik.", "Lee con calma las respuestas antes de votar.",
                  "Take your time to read the answers before voting."),
    "vote.too_early": (
        "Irakurri bi erantzunak botoa eman aurretik. Itxaron segundo batzuk:",
        "Lee las dos respuestas antes de votar. Espera unos segundos:",
        "Please read both answers before voting. Wait a few seconds:",
    ),
    "auth.username_taken": ("Erabiltzaile-izen hori hartuta dago.", "Ese nombre de usuario ya existe.",
                            "That username is taken."),
    "auth.bad_login": ("Erabiltzaile-izena edo pasahitza ez da zuzena.", "Usuario o contraseña incorrectos.",
                       "Wrong username or password."),
    "battle.busy": ("Ereduak aurreko mezuari erantzuten ari dira oraindik.",
                    "Los modelos aún están respondiendo al mensaje anterior.",
                    "The models are still answering the previous message."),
    "battle.closed": ("Borroka honek ez du txanda gehiagorik onartzen. Hasi borroka berri bat.",
                      "Esta batalla no admite más turnos. Empieza una nueva.",
                      "This battle takes no more turns. Start a new battle."),
    "common.rate_limited": ("Eskaera gehiegi denbora gutxian. Itxaron pixka bat.",
                            "Demasiadas peticiones en poco tiempo. Espera un poco.",
                            "Too many requests in a short time. Please wait a little."),
    "common.loading": ("Kargatzen...", "Cargando...", "Loading..."),
}


def text(key: str, lang: str = DEFAULT_LANG) -> str:
    """The string for ``key`` in ``lang`` (falls back to Basque for an unknown language)."""
    entry = CATALOGUE[key]
    return entry[LANGS.index(lang)] if lang in LANGS else entry[0]


def problems() -> list[str]:
    """Catalogue defects (empty strings, untranslated copies); an empty list means the catalogue is whole."""
    out = []
    for key, entry in CATALOGUE.items():
        if len(entry) != len(LANGS):
            out.append(f"{key}: {len(entry)} languages, expected {len(LANGS)}")
            continue
        for lang, value in zip(LANGS, entry, strict=True):
            if not value.strip():
                out.append(f"{key}: empty {lang}")
    return out
