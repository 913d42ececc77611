//! Conditions seen in general practice: CIM-10 code, label, who has them, and templates for
//! the consultation note and the prescription.
//!
//! Templates hold placeholders in braces, filled by [`crate::seed::clinical`]: measurements
//! (`{temp}`, `{ta}`, `{hba1c}`, …), durations (`{jours}`, `{mois}`), and agreement with the
//! patient's sex (`{patient}` is « patient » or « patiente », `{e}` adds the feminine « e »).
//! An empty prescription template means the visit ended without one.

/// Whether a condition follows a patient (chronic) or comes with a single visit (acute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Course {
    /// A long-term condition: prevalence per mille for ages 0–17, 18–44, 45–64 and 65+.
    Chronic([u16; 4]),
    /// A reason for one visit, with a relative weight among the acute reasons.
    Acute(u32),
}

/// Who a condition concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Anyone.
    Anyone,
    /// Women only.
    Women,
    /// Men only.
    Men,
}

/// A condition and how to write about it.
#[derive(Debug, Clone, Copy)]
pub struct Condition {
    /// The CIM-10 code (ICD-10 as used in France): a letter, two digits, and an optional
    /// subdivision after a dot.
    pub code: &'static str,
    /// The condition's label in French.
    pub label: &'static str,
    /// Chronic or acute.
    pub course: Course,
    /// Who it concerns.
    pub who: Who,
    /// Youngest age (at the visit) it is seen at.
    pub min_age: u8,
    /// Oldest age (at the visit) it is seen at.
    pub max_age: u8,
    /// The first year it can be diagnosed (COVID-19 from 2020); 0 for always.
    pub since: i32,
    /// Templates of the consultation note.
    pub notes: &'static [&'static str],
    /// Templates of the prescription; `""` for none.
    pub prescriptions: &'static [&'static str],
}

const fn chronic(
    code: &'static str,
    label: &'static str,
    who: Who,
    prevalence: [u16; 4],
    notes: &'static [&'static str],
    prescriptions: &'static [&'static str],
) -> Condition {
    Condition {
        code,
        label,
        course: Course::Chronic(prevalence),
        who,
        min_age: 0,
        max_age: 120,
        since: 0,
        notes,
        prescriptions,
    }
}

#[allow(clippy::too_many_arguments)]
const fn acute(
    code: &'static str,
    label: &'static str,
    who: Who,
    ages: (u8, u8),
    since: i32,
    weight: u32,
    notes: &'static [&'static str],
    prescriptions: &'static [&'static str],
) -> Condition {
    Condition {
        code,
        label,
        course: Course::Acute(weight),
        who,
        min_age: ages.0,
        max_age: ages.1,
        since,
        notes,
        prescriptions,
    }
}

use Who::{Anyone, Men, Women};

/// Every condition the generator writes about.
pub const CONDITIONS: &[Condition] = &[
    // --- Chronic ----------------------------------------------------------------------------
    chronic(
        "I10",
        "Hypertension essentielle (primitive)",
        Anyone,
        [0, 40, 250, 550],
        &[
            "Suivi HTA. TA {ta_haute}, FC {fc}. Bonne observance, pas d'effet indésirable. Poursuite du traitement.",
            "Renouvellement. TA {ta} au cabinet, automesure correcte. Conseils hygiéno-diététiques : réduction du sel.",
            "HTA insuffisamment contrôlée : TA {ta_haute}. Majoration du traitement, contrôle dans {mois} mois.",
        ],
        &[
            "Amlodipine 5 mg : 1 comprimé le matin. Traitement pour 3 mois.",
            "Ramipril 5 mg : 1 comprimé par jour. Ionogramme sanguin et créatininémie dans 15 jours.",
            "Périndopril 4 mg / indapamide 1,25 mg : 1 comprimé le matin. QSP 3 mois.",
        ],
    ),
    chronic(
        "E11.9",
        "Diabète sucré de type 2, sans complication",
        Anyone,
        [1, 20, 90, 180],
        &[
            "Diabète de type 2. HbA1c {hba1c}, poids {poids}. Examen des pieds normal. Poursuite de la metformine.",
            "Bilan diabète : HbA1c {hba1c}, DFG {dfg_normal}. Fond d'œil à programmer.",
            "HbA1c {hba1c} en hausse. Rappel des règles hygiéno-diététiques, activité physique 30 min par jour.",
        ],
        &[
            "Metformine 1000 mg : 1 comprimé matin et soir au cours des repas. QSP 3 mois.",
            "Metformine 850 mg : 1 comprimé 3 fois par jour. HbA1c dans 3 mois.",
            "Dulaglutide 1,5 mg : 1 injection sous-cutanée par semaine. QSP 3 mois.",
        ],
    ),
    chronic(
        "E78.0",
        "Hypercholestérolémie essentielle",
        Anyone,
        [0, 30, 150, 250],
        &[
            "Dyslipidémie. LDL-c {ldl}. Poursuite de la statine, bonne tolérance musculaire.",
            "Bilan lipidique : LDL-c {ldl}, objectif non atteint. Renforcement des mesures diététiques.",
        ],
        &[
            "Atorvastatine 20 mg : 1 comprimé le soir. QSP 3 mois.",
            "Rosuvastatine 10 mg : 1 comprimé par jour. Bilan lipidique et transaminases dans 3 mois.",
        ],
    ),
    chronic(
        "J45.9",
        "Asthme, sans précision",
        Anyone,
        [80, 60, 50, 40],
        &[
            "Asthme. {Patient} décrit {crises} crises par mois, réveils nocturnes rares. Auscultation libre, SpO2 {spo2}.",
            "Exacerbation d'asthme après une infection virale, sibilants diffus. SpO2 {spo2}.",
            "Asthme contrôlé. Vérification de la technique d'inhalation.",
        ],
        &[
            "Budésonide/formotérol 200/6 µg : 1 inhalation matin et soir. Salbutamol 100 µg : 1 à 2 bouffées si gêne.",
            "Prednisolone 20 mg : 2 comprimés le matin pendant 5 jours. Salbutamol 100 µg : 2 bouffées 4 fois par jour.",
        ],
    ),
    chronic(
        "E03.9",
        "Hypothyroïdie, sans précision",
        Women,
        [3, 40, 90, 120],
        &[
            "Hypothyroïdie substituée. TSH {tsh}. Pas de signe de surdosage.",
            "Contrôle de la TSH à {tsh}, ajustement de la posologie.",
        ],
        &[
            "Lévothyroxine 75 µg : 1 comprimé le matin à jeun. TSH dans 6 semaines.",
            "Lévothyroxine 100 µg : 1 comprimé le matin à jeun. QSP 3 mois.",
        ],
    ),
    chronic(
        "M17.9",
        "Gonarthrose, sans précision",
        Anyone,
        [0, 5, 60, 200],
        &[
            "Gonalgies mécaniques, EVA {eva}/10. Genou sec, flexion limitée. Radiographie : pincement fémoro-tibial.",
            "Gonarthrose : poussée douloureuse, épanchement modéré. Repos relatif et kinésithérapie.",
        ],
        &[
            "{paracetamol} jusqu'à 3 fois par jour si douleur. Kinésithérapie : 15 séances de renforcement du quadriceps.",
            "Kétoprofène gel 2,5 % : 1 application 2 fois par jour pendant 7 jours.",
        ],
    ),
    chronic(
        "I48.9",
        "Fibrillation et flutter auriculaires, sans précision",
        Anyone,
        [0, 1, 15, 90],
        &[
            "FA permanente sous anticoagulant. FC {fc}, pas de signe hémorragique.",
            "Suivi de la FA. ECG : rythme irrégulier à {fc}. Fonction rénale stable.",
        ],
        &[
            "Apixaban 5 mg : 1 comprimé matin et soir. Bisoprolol 2,5 mg : 1 comprimé le matin.",
            "Rivaroxaban 20 mg : 1 comprimé le soir au cours du repas. QSP 3 mois.",
        ],
    ),
    chronic(
        "J44.9",
        "Maladie pulmonaire obstructive chronique, sans précision",
        Anyone,
        [0, 3, 40, 90],
        &[
            "BPCO, dyspnée d'effort stable. SpO2 {spo2}. Sevrage tabagique encouragé.",
            "Exacerbation de BPCO : majoration de la dyspnée, expectoration purulente. Température {temp}.",
        ],
        &[
            "Tiotropium 2,5 µg : 2 bouffées une fois par jour. Salbutamol 100 µg si besoin.",
            "Amoxicilline/acide clavulanique 1 g : 1 sachet 3 fois par jour pendant 7 jours. Prednisolone 40 mg pendant 5 jours.",
        ],
    ),
    chronic(
        "F32.9",
        "Épisode dépressif, sans précision",
        Anyone,
        [10, 60, 60, 50],
        &[
            "Humeur triste, anhédonie, troubles du sommeil depuis {semaines} semaines. Pas d'idée suicidaire. Arrêt de travail discuté.",
            "Amélioration thymique partielle sous traitement. Poursuite, suivi psychologique en place.",
        ],
        &[
            "Sertraline 50 mg : 1 comprimé le matin. QSP 28 jours.",
            "Escitalopram 10 mg : 1 comprimé par jour. Réévaluation dans 4 semaines.",
        ],
    ),
    chronic(
        "F41.1",
        "Anxiété généralisée",
        Anyone,
        [10, 50, 40, 30],
        &[
            "Anxiété permanente, ruminations, tensions musculaires. Thérapie cognitivo-comportementale proposée.",
            "Suivi de l'anxiété : mieux depuis la reprise d'une activité sportive. Sommeil correct.",
        ],
        &[
            "Hydroxyzine 25 mg : 1 comprimé le soir si besoin. QSP 1 mois.",
            "",
        ],
    ),
    chronic(
        "G43.9",
        "Migraine, sans précision",
        Anyone,
        [20, 80, 50, 15],
        &[
            "Céphalées pulsatiles hémicrâniennes avec photophobie, {crises} crises par mois. Examen neurologique normal.",
            "Migraine : crises mieux contrôlées, agenda des crises tenu.",
        ],
        &[
            "Sumatriptan 50 mg : 1 comprimé dès le début de la crise, à renouveler après 2 heures si besoin. Maximum 2 par jour.",
            "Ibuprofène 400 mg : 1 comprimé au début de la crise. Maximum 3 par jour.",
        ],
    ),
    chronic(
        "K21.9",
        "Reflux gastro-œsophagien sans œsophagite",
        Anyone,
        [5, 50, 80, 100],
        &[
            "Pyrosis postprandial et régurgitations. Surélever la tête du lit, éviter les repas tardifs.",
            "RGO amélioré sous IPP, tentative de décroissance.",
        ],
        &[
            "Ésoméprazole 20 mg : 1 gélule le matin à jeun pendant 4 semaines.",
            "Oméprazole 20 mg : 1 gélule par jour pendant 28 jours.",
        ],
    ),
    chronic(
        "E66.9",
        "Obésité, sans précision",
        Anyone,
        [30, 90, 170, 150],
        &[
            "Poids {poids}, IMC {imc_obesite}. Accompagnement diététique, objectif de perte de 5 % en 6 mois.",
            "Suivi pondéral : poids {poids}. Activité physique adaptée débutée.",
        ],
        &[
            "",
            "Consultation diététique. Bilan : glycémie à jeun, bilan lipidique, TSH.",
        ],
    ),
    chronic(
        "N18.3",
        "Maladie rénale chronique, stade 3",
        Anyone,
        [0, 2, 20, 100],
        &[
            "Maladie rénale chronique stade 3, DFG {dfg}. Adaptation des posologies.",
            "Suivi néphrologique : kaliémie normale, DFG {dfg}.",
        ],
        &[
            "Bilan : créatininémie, DFG, kaliémie, albuminurie dans 3 mois.",
            "Ramipril 2,5 mg : 1 comprimé par jour. Éviter les anti-inflammatoires.",
        ],
    ),
    chronic(
        "I25.9",
        "Cardiopathie ischémique chronique, sans précision",
        Anyone,
        [0, 1, 25, 80],
        &[
            "Coronaropathie stentée, pas de douleur thoracique. TA {ta}, FC {fc}. Observance vérifiée.",
            "Suivi coronarien, ECG sans modification. Réadaptation cardiaque terminée.",
        ],
        &[
            "Aspirine 75 mg : 1 sachet par jour. Bisoprolol 5 mg : 1 comprimé le matin. Atorvastatine 80 mg : 1 comprimé le soir.",
            "Trinitrine spray : 1 pulvérisation sous la langue en cas de douleur thoracique.",
        ],
    ),
    chronic(
        "M81.9",
        "Ostéoporose, sans précision",
        Women,
        [0, 2, 50, 200],
        &[
            "Ostéoporose densitométrique, T-score à -2,8 au rachis. Pas de nouvelle fracture.",
            "Suivi de l'ostéoporose, apports calciques alimentaires suffisants.",
        ],
        &[
            "Acide alendronique 70 mg : 1 comprimé par semaine à jeun avec un grand verre d'eau. Cholécalciférol 100 000 UI : 1 ampoule tous les 3 mois.",
            "Cholécalciférol 50 000 UI : 1 ampoule par mois.",
        ],
    ),
    chronic(
        "G30.9",
        "Maladie d'Alzheimer, sans précision",
        Anyone,
        [0, 0, 2, 60],
        &[
            "Troubles mnésiques évolutifs, MMS 19/30. Aidant principal présent. Dossier APA en cours.",
            "Visite à domicile : {patient} désorienté{e} dans le temps, alimentation correcte. Passage infirmier quotidien.",
        ],
        &[
            "Soins infirmiers à domicile : aide à la prise des traitements, 7 jours sur 7 pendant 3 mois.",
            "",
        ],
    ),
    chronic(
        "G20",
        "Maladie de Parkinson",
        Anyone,
        [0, 0, 3, 20],
        &[
            "Syndrome parkinsonien, tremblement de repos à droite, fluctuations de fin de dose.",
            "Suivi de la maladie de Parkinson : chutes récentes, kinésithérapie renforcée.",
        ],
        &[
            "Lévodopa/bensérazide 100/25 mg : 1 gélule 3 fois par jour. Kinésithérapie : 30 séances.",
        ],
    ),
    chronic(
        "L20.9",
        "Dermite atopique, sans précision",
        Anyone,
        [100, 30, 15, 10],
        &[
            "Eczéma atopique des plis, poussée modérée, prurit nocturne.",
            "Dermatite atopique améliorée, peau sèche. Émollient quotidien.",
        ],
        &[
            "Désonide 0,05 % crème : 1 application le soir pendant 7 jours puis décroissance. Émollient 2 fois par jour.",
        ],
    ),
    chronic(
        "J30.4",
        "Rhinite allergique, sans précision",
        Anyone,
        [60, 120, 60, 30],
        &[
            "Rhinite saisonnière : éternuements, rhinorrhée claire, prurit oculaire. Pollens de graminées.",
            "Rhinite allergique perannuelle aux acariens, désensibilisation discutée.",
        ],
        &[
            "Desloratadine 5 mg : 1 comprimé par jour pendant la saison pollinique. Mométasone spray nasal : 2 pulvérisations par narine le matin.",
            "Cétirizine 10 mg : 1 comprimé le soir pendant 1 mois.",
        ],
    ),
    chronic(
        "F17.2",
        "Troubles liés à l'utilisation du tabac : syndrome de dépendance",
        Anyone,
        [5, 250, 200, 80],
        &[
            "Tabagisme actif à {paquets} paquets-années. Motivé{e} pour un sevrage.",
            "Sevrage tabagique en cours depuis {semaines} semaines, quelques envies bien gérées.",
        ],
        &[
            "Nicotine timbre 21 mg/24 h : 1 timbre par jour pendant 4 semaines, puis 14 mg. Gommes 2 mg si envie.",
        ],
    ),
    chronic(
        "B20",
        "Maladie due au VIH",
        Anyone,
        [0, 3, 3, 1],
        &[
            "Infection par le VIH suivie au CHU, charge virale indétectable, CD4 {cd4}/mm³. Bonne observance.",
            "Renouvellement du traitement antirétroviral, tolérance correcte.",
        ],
        &["Bictégravir/emtricitabine/ténofovir alafénamide : 1 comprimé par jour. QSP 1 mois."],
    ),
    chronic(
        "C50.9",
        "Tumeur maligne du sein, sans précision",
        Women,
        [0, 5, 25, 40],
        &[
            "Cancer du sein en rémission, hormonothérapie bien tolérée. Mammographie de surveillance normale.",
            "Suivi oncologique : bouffées de chaleur et arthralgies sous hormonothérapie.",
        ],
        &[
            "Létrozole 2,5 mg : 1 comprimé par jour. QSP 3 mois.",
            "Tamoxifène 20 mg : 1 comprimé par jour. QSP 3 mois.",
        ],
    ),
    chronic(
        "C61",
        "Tumeur maligne de la prostate",
        Men,
        [0, 0, 10, 60],
        &[
            "Adénocarcinome prostatique sous surveillance active. PSA stable à {psa}.",
            "Cancer de la prostate traité par radiothérapie, PSA {psa}, troubles urinaires modérés.",
        ],
        &["Dosage du PSA total dans 6 mois.", ""],
    ),
    chronic(
        "N40",
        "Hyperplasie de la prostate",
        Men,
        [0, 1, 80, 250],
        &[
            "Pollakiurie nocturne, jet faible. Toucher rectal : prostate augmentée de volume, souple.",
            "Hypertrophie bénigne de la prostate : symptômes améliorés sous alpha-bloquant.",
        ],
        &["Tamsulosine 0,4 mg : 1 gélule le soir. QSP 3 mois."],
    ),
    chronic(
        "G47.0",
        "Troubles de l'endormissement et du maintien du sommeil",
        Anyone,
        [10, 60, 80, 120],
        &[
            "Difficultés d'endormissement depuis {mois} mois, réveils précoces. Règles d'hygiène du sommeil expliquées.",
            "Insomnie améliorée par la thérapie comportementale, sevrage de l'hypnotique engagé.",
        ],
        &[
            "Mélatonine 2 mg LP : 1 comprimé 1 heure avant le coucher pendant 3 semaines.",
            "Zopiclone 3,75 mg : 1 comprimé au coucher si besoin, 14 jours maximum.",
        ],
    ),
    // --- Acute and preventive ---------------------------------------------------------------
    acute(
        "J06.9",
        "Infection aiguë des voies respiratoires supérieures, sans précision",
        Anyone,
        (0, 120),
        0,
        120,
        &[
            "Rhinorrhée, toux sèche et fébricule depuis {jours} jours. Température {temp}. Tympans normaux, auscultation libre. Rhinopharyngite virale.",
            "Rhinopharyngite : lavages de nez et traitement symptomatique. Pas d'antibiotique.",
        ],
        &[
            "{paracetamol} toutes les 6 heures si fièvre, pendant {jours} jours. Sérum physiologique : lavages de nez.",
            "",
        ],
    ),
    acute(
        "J20.9",
        "Bronchite aiguë, sans précision",
        Anyone,
        (2, 120),
        0,
        50,
        &[
            "Toux productive depuis {jours} jours, ronchi diffus. Température {temp}, SpO2 {spo2}. Bronchite aiguë.",
            "Bronchite aiguë virale probable, pas de signe de gravité. Réévaluation si fièvre au-delà de 3 jours.",
        ],
        &[
            "{paracetamol} si fièvre ou douleur, pendant {jours} jours.",
            "",
        ],
    ),
    acute(
        "J02.9",
        "Pharyngite aiguë, sans précision",
        Anyone,
        (3, 120),
        0,
        30,
        &[
            "Odynophagie depuis {jours} jours, pharynx érythémateux. TDR angine négatif. Température {temp}.",
        ],
        &["{paracetamol} toutes les 6 heures si douleur, pendant {jours} jours."],
    ),
    acute(
        "J03.9",
        "Amygdalite aiguë, sans précision",
        Anyone,
        (3, 60),
        0,
        30,
        &[
            "Angine érythémato-pultacée, TDR positif. Température {temp}. Pas de complication locale.",
        ],
        &["Amoxicilline 1 g : 1 comprimé matin et soir pendant 6 jours. {paracetamol} si fièvre."],
    ),
    acute(
        "H66.9",
        "Otite moyenne, sans précision",
        Anyone,
        (0, 12),
        0,
        60,
        &[
            "Otalgie droite et fièvre à {temp} depuis {jours} jours. Tympan bombé et congestif. Otite moyenne aiguë.",
        ],
        &[
            "Amoxicilline suspension buvable : 1 dose-poids matin et soir pendant 8 jours. {paracetamol} si fièvre.",
        ],
    ),
    acute(
        "J11.1",
        "Grippe avec d'autres manifestations respiratoires, virus non identifié",
        Anyone,
        (0, 120),
        0,
        40,
        &[
            "Syndrome grippal brutal : fièvre à {temp}, myalgies, céphalées, toux. Contexte épidémique. Arrêt de travail de {jours} jours.",
        ],
        &[
            "{paracetamol} toutes les 6 heures si fièvre, pendant {jours} jours. Repos, hydratation.",
        ],
    ),
    acute(
        "U07.1",
        "COVID-19, virus identifié",
        Anyone,
        (0, 120),
        2020,
        30,
        &[
            "Test antigénique positif au SARS-CoV-2. Fièvre à {temp}, toux, anosmie. SpO2 {spo2}. Isolement expliqué.",
        ],
        &[
            "{paracetamol} toutes les 6 heures si fièvre. Oxymètre : consulter si SpO2 inférieure à 94 %.",
            "",
        ],
    ),
    acute(
        "A09",
        "Diarrhée et gastro-entérite d'origine présumée infectieuse",
        Anyone,
        (0, 120),
        0,
        50,
        &[
            "Diarrhée aiguë et vomissements depuis {jours} jours, abdomen souple. Pas de signe de déshydratation. Gastro-entérite virale.",
        ],
        &[
            "Soluté de réhydratation orale à volonté. Racécadotril : 1 gélule 3 fois par jour pendant 3 jours.",
            "",
        ],
    ),
    acute(
        "N39.0",
        "Infection des voies urinaires, siège non précisé",
        Women,
        (15, 120),
        0,
        40,
        &[
            "Brûlures mictionnelles et pollakiurie depuis {jours} jours, apyrétique. Bandelette urinaire : leucocytes et nitrites positifs. Cystite aiguë simple.",
        ],
        &["Fosfomycine trométamol 3 g : 1 sachet en une prise unique, à distance des repas."],
    ),
    acute(
        "M54.5",
        "Lombalgie basse",
        Anyone,
        (18, 120),
        0,
        60,
        &[
            "Lombalgie aiguë après un effort de soulèvement, EVA {eva}/10. Pas de signe neurologique. Reprise progressive des activités conseillée.",
            "Lombalgie commune récidivante, contracture paravertébrale. Kinésithérapie proposée.",
        ],
        &[
            "{paracetamol} jusqu'à 3 fois par jour. Ibuprofène 400 mg : 1 comprimé 3 fois par jour au cours des repas pendant 5 jours.",
            "Kinésithérapie : 10 séances de rééducation lombaire.",
        ],
    ),
    acute(
        "S93.4",
        "Entorse et foulure de la cheville",
        Anyone,
        (8, 70),
        0,
        20,
        &[
            "Entorse de la cheville droite en inversion lors d'un match, œdème latéral. Règles d'Ottawa négatives, pas de radiographie.",
        ],
        &[
            "Orthèse stabilisatrice de cheville pendant 3 semaines. Glaçage. {paracetamol} si douleur.",
        ],
    ),
    acute(
        "T14.1",
        "Plaie ouverte d'une partie du corps non précisée",
        Anyone,
        (2, 120),
        0,
        10,
        &[
            "Plaie superficielle de l'avant-bras, nettoyage et pose de stéristrips. Vaccination antitétanique à jour.",
        ],
        &[
            "Soins infirmiers : pansement tous les 2 jours pendant 10 jours.",
            "",
        ],
    ),
    acute(
        "H10.9",
        "Conjonctivite, sans précision",
        Anyone,
        (0, 120),
        0,
        20,
        &[
            "Œil rouge bilatéral avec sécrétions, acuité visuelle conservée. Conjonctivite probablement virale.",
        ],
        &["Sérum physiologique : lavages oculaires 4 fois par jour pendant 7 jours."],
    ),
    acute(
        "L70.0",
        "Acné vulgaire",
        Anyone,
        (12, 25),
        0,
        15,
        &["Acné inflammatoire modérée du visage. Conseils d'hygiène cutanée."],
        &["Peroxyde de benzoyle 5 % gel : 1 application le soir pendant 3 mois."],
    ),
    acute(
        "R51",
        "Céphalée",
        Anyone,
        (10, 120),
        0,
        15,
        &[
            "Céphalées de tension en fin de journée depuis {semaines} semaines, examen neurologique normal. TA {ta}.",
        ],
        &["{paracetamol} si douleur, maximum 3 par jour.", ""],
    ),
    acute(
        "K59.0",
        "Constipation",
        Anyone,
        (0, 120),
        0,
        15,
        &[
            "Constipation depuis {semaines} semaines, abdomen souple. Conseils alimentaires : fibres, hydratation.",
        ],
        &["Macrogol 4000 : 1 sachet le matin pendant 2 semaines."],
    ),
    acute(
        "R10.4",
        "Douleurs abdominales, autres et non précisées",
        Anyone,
        (3, 120),
        0,
        20,
        &[
            "Douleurs abdominales diffuses depuis {jours} jours, transit conservé, abdomen souple et dépressible. Température {temp}.",
        ],
        &[
            "Phloroglucinol 80 mg : 2 comprimés 3 fois par jour si douleur.",
            "",
        ],
    ),
    acute(
        "Z00.0",
        "Examen médical général",
        Anyone,
        (3, 120),
        0,
        60,
        &[
            "Bilan de santé annuel. TA {ta}, poids {poids}, IMC {imc}. Examen clinique normal.",
            "Certificat de non-contre-indication à la pratique sportive. Examen cardio-pulmonaire normal.",
        ],
        &[
            "",
            "Bilan sanguin : NFS, glycémie à jeun, bilan lipidique, créatininémie.",
        ],
    ),
    acute(
        "Z00.1",
        "Examen de santé de routine de l'enfant",
        Anyone,
        (0, 2),
        0,
        300,
        &[
            "Examen du {mois}e mois : croissance harmonieuse, développement psychomoteur normal. Vaccinations à jour.",
        ],
        &["Vitamine D : 1 dose par jour.", ""],
    ),
    acute(
        "Z25.1",
        "Nécessité d'une vaccination contre la grippe",
        Anyone,
        (65, 120),
        0,
        40,
        &["Vaccination antigrippale saisonnière réalisée au cabinet, pas de réaction immédiate."],
        &["Vaccin grippal quadrivalent : 1 injection intramusculaire."],
    ),
    acute(
        "Z30.0",
        "Conseils et avis généraux concernant la contraception",
        Women,
        (15, 49),
        0,
        30,
        &[
            "Consultation de contraception. TA {ta}. Pas de contre-indication aux œstroprogestatifs, tabac discuté.",
        ],
        &[
            "Lévonorgestrel/éthinylestradiol 100/20 µg : 1 comprimé par jour, 21 jours sur 28. QSP 1 an.",
        ],
    ),
    acute(
        "Z34.9",
        "Surveillance d'une grossesse normale, sans précision",
        Women,
        (18, 44),
        0,
        15,
        &[
            "Grossesse de {sa} SA, évolution normale. TA {ta}, bruits du cœur fœtal perçus. Échographie à programmer.",
        ],
        &["Acide folique 0,4 mg : 1 comprimé par jour. Bilan du premier trimestre."],
    ),
    acute(
        "N95.1",
        "Ménopause et climatère chez la femme",
        Women,
        (45, 60),
        0,
        15,
        &[
            "Bouffées de chaleur et sueurs nocturnes, aménorrhée depuis {mois} mois. Information sur les traitements hormonaux.",
        ],
        &["", "Mammographie de dépistage et bilan lipidique."],
    ),
    acute(
        "R05",
        "Toux",
        Anyone,
        (0, 120),
        0,
        25,
        &[
            "Toux sèche persistante depuis {semaines} semaines, auscultation normale. Pas de fièvre.",
        ],
        &["", "Radiographie thoracique de face."],
    ),
    acute(
        "J01.9",
        "Sinusite aiguë, sans précision",
        Anyone,
        (10, 120),
        0,
        20,
        &[
            "Douleur sous-orbitaire unilatérale et rhinorrhée purulente depuis {jours} jours. Sinusite maxillaire aiguë.",
        ],
        &["Amoxicilline 1 g : 1 comprimé matin et soir pendant 7 jours. Lavages de nez."],
    ),
    acute(
        "F43.2",
        "Troubles de l'adaptation",
        Anyone,
        (16, 70),
        0,
        15,
        &[
            "Épuisement professionnel : fatigue, irritabilité, troubles du sommeil. Arrêt de travail de {semaines} semaines.",
        ],
        &["", "Consultation avec un psychologue."],
    ),
    acute(
        "R42",
        "Étourdissements et éblouissements",
        Anyone,
        (30, 120),
        0,
        10,
        &[
            "Vertiges rotatoires brefs aux changements de position, manœuvre de Dix-Hallpike positive. VPPB.",
        ],
        &["Manœuvre libératoire réalisée au cabinet. Kinésithérapie vestibulaire si récidive."],
    ),
    acute(
        "B37.3",
        "Candidose de la vulve et du vagin",
        Women,
        (15, 120),
        0,
        10,
        &["Prurit vulvaire et leucorrhées blanchâtres. Candidose vulvo-vaginale."],
        &["Éconazole 150 mg : 1 ovule le soir pendant 3 jours."],
    ),
];
