//! The static vocabulary of the synthetic data set: role families with their
//! titles, skills, pay and seniority ladders, the cities, and company name parts.

/// Sector of a family: decides company names, remote share and contract mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Tech,
    Data,
    Design,
    Sales,
    Healthcare,
    Finance,
    Ops,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Category::Tech,
        Category::Data,
        Category::Design,
        Category::Sales,
        Category::Healthcare,
        Category::Finance,
        Category::Ops,
    ];

    pub fn index(self) -> usize {
        Category::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or_default()
    }

    /// Share of postings that are remote.
    pub fn remote_share(self) -> f64 {
        match self {
            Category::Tech | Category::Data => 0.42,
            Category::Design => 0.38,
            Category::Sales => 0.25,
            Category::Finance => 0.18,
            Category::Ops => 0.08,
            Category::Healthcare => 0.03,
        }
    }

    /// Weights of full_time, part_time, contract, temporary (internships come
    /// from the seniority ladder).
    pub fn employment_weights(self) -> [u32; 4] {
        match self {
            Category::Tech | Category::Data => [82, 3, 13, 2],
            Category::Design => [75, 6, 16, 3],
            Category::Sales => [80, 12, 4, 4],
            Category::Healthcare => [70, 22, 3, 5],
            Category::Finance => [85, 4, 8, 3],
            Category::Ops => [75, 12, 4, 9],
        }
    }

    pub fn company_suffixes(self) -> &'static [&'static str] {
        match self {
            Category::Tech => &["Labs", "Systems", "Technologies", "Software", "Cloud", "AI"],
            Category::Data => &["Analytics", "Data", "Insights", "AI", "Labs"],
            Category::Design => &["Studio", "Design", "Creative", "Media", "Agency"],
            Category::Sales => &["Group", "Solutions", "Commerce", "Retail", "Marketing"],
            Category::Healthcare => &["Health", "Medical Center", "Clinic", "Hospital", "Care"],
            Category::Finance => &["Capital", "Bank", "Partners", "Financial", "Insurance"],
            Category::Ops => &[
                "Logistics",
                "Industries",
                "Manufacturing",
                "Supply",
                "Services",
            ],
        }
    }
}

/// One seniority step: title prefix, how common it is, and its pay factor.
#[derive(Debug, Clone, Copy)]
pub struct Level {
    pub prefix: &'static str,
    pub weight: u32,
    pub pay: f64,
    /// Intern titles take a suffix and the `internship` employment type.
    pub intern: bool,
}

const fn lvl(prefix: &'static str, weight: u32, pay: f64) -> Level {
    Level {
        prefix,
        weight,
        pay,
        intern: false,
    }
}

const INTERN: Level = Level {
    prefix: "",
    weight: 3,
    pay: 0.4,
    intern: true,
};

/// Seniority ladder of engineering-style careers.
pub const ENG: &[Level] = &[
    INTERN,
    lvl("Junior ", 12, 0.72),
    lvl("", 35, 1.0),
    lvl("Senior ", 30, 1.3),
    lvl("Lead ", 8, 1.45),
    lvl("Staff ", 6, 1.6),
    lvl("Principal ", 3, 1.85),
];
/// Office professions.
pub const PROF: &[Level] = &[
    Level {
        weight: 2,
        pay: 0.45,
        ..INTERN
    },
    lvl("Junior ", 15, 0.75),
    lvl("", 45, 1.0),
    lvl("Senior ", 28, 1.3),
    lvl("Lead ", 10, 1.5),
];
/// Clinical professions.
pub const CLINICAL: &[Level] = &[
    lvl("", 70, 1.0),
    lvl("Senior ", 22, 1.25),
    lvl("Lead ", 8, 1.45),
];
/// Hourly and front-line work.
pub const FRONTLINE: &[Level] = &[
    lvl("Trainee ", 12, 0.85),
    lvl("", 70, 1.0),
    lvl("Senior ", 18, 1.15),
];
/// Titles that already say their rank.
pub const FLAT: &[Level] = &[lvl("", 80, 1.0), lvl("Senior ", 20, 1.2)];

/// A role family: one embedding cluster. Its roles are the sub-clusters.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub category: Category,
    /// Relative number of postings.
    pub weight: u32,
    /// Mid-level yearly salary (USD) in a city of pay factor 1.0.
    pub base_salary: f64,
    pub ladder: &'static [Level],
    /// "... to {duty}." in the description.
    pub duty: &'static str,
    /// Title and signature skills of each specialisation.
    pub roles: &'static [(&'static str, &'static [&'static str])],
    /// Skills any posting of the family may ask for.
    pub skills: &'static [&'static str],
}

use Category::*;

// A data table: one family per block is easier to read than rustfmt's layout.
#[rustfmt::skip]
pub const FAMILIES: &[Family] = &[
    Family {
        name: "backend",
        category: Tech,
        weight: 6,
        base_salary: 115_000.0,
        ladder: ENG,
        duty: "design, build and operate the services behind our product",
        roles: &[
            ("Backend Engineer (Rust)", &["rust", "tokio"]),
            ("Backend Engineer (Go)", &["go", "grpc"]),
            ("Backend Engineer (Java)", &["java", "spring boot"]),
            ("Backend Engineer (Python)", &["python", "django"]),
            ("Software Engineer, Payments", &["payments", "postgresql"]),
        ],
        skills: &[
            "sql", "postgresql", "docker", "kubernetes", "aws", "rest apis", "grpc", "redis",
            "kafka", "git", "microservices", "linux", "terraform", "observability",
        ],
    },
    Family {
        name: "frontend",
        category: Tech,
        weight: 4,
        base_salary: 105_000.0,
        ladder: ENG,
        duty: "build fast, accessible web interfaces",
        roles: &[
            ("Frontend Engineer (React)", &["react", "typescript"]),
            ("Frontend Engineer (Vue)", &["vue", "typescript"]),
            ("Frontend Engineer (Angular)", &["angular", "rxjs"]),
            ("Web Developer", &["javascript", "html"]),
        ],
        skills: &[
            "javascript", "typescript", "html", "css", "accessibility", "webpack", "vite",
            "jest", "graphql", "figma", "next.js", "tailwind css", "web performance",
        ],
    },
    Family {
        name: "fullstack",
        category: Tech,
        weight: 4,
        base_salary: 108_000.0,
        ladder: ENG,
        duty: "ship features end to end, from the database to the browser",
        roles: &[
            ("Full Stack Engineer", &["typescript", "node.js"]),
            ("Full Stack Developer (Ruby on Rails)", &["ruby", "rails"]),
            ("Full Stack Engineer (Python/React)", &["python", "react"]),
            ("Software Engineer", &["java", "javascript"]),
        ],
        skills: &[
            "sql", "postgresql", "react", "node.js", "docker", "aws", "rest apis", "git",
            "graphql", "redis", "ci/cd", "testing",
        ],
    },
    Family {
        name: "mobile",
        category: Tech,
        weight: 3,
        base_salary: 110_000.0,
        ladder: ENG,
        duty: "build and release our mobile apps",
        roles: &[
            ("iOS Engineer", &["swift", "swiftui"]),
            ("Android Engineer", &["kotlin", "jetpack compose"]),
            ("Mobile Engineer (React Native)", &["react native", "typescript"]),
            ("Mobile Developer (Flutter)", &["flutter", "dart"]),
        ],
        skills: &[
            "git", "rest apis", "ci/cd", "app store", "firebase", "graphql", "unit testing",
            "accessibility", "ux", "performance profiling",
        ],
    },
    Family {
        name: "platform",
        category: Tech,
        weight: 4,
        base_salary: 118_000.0,
        ladder: ENG,
        duty: "keep our infrastructure reliable, secure and cheap to run",
        roles: &[
            ("Site Reliability Engineer", &["sre", "prometheus"]),
            ("DevOps Engineer", &["ci/cd", "jenkins"]),
            ("Platform Engineer", &["kubernetes", "go"]),
            ("Cloud Engineer (AWS)", &["aws", "cloudformation"]),
            ("Cloud Engineer (Azure)", &["azure", "bicep"]),
        ],
        skills: &[
            "linux", "terraform", "kubernetes", "docker", "aws", "python", "bash", "ansible",
            "grafana", "incident response", "networking", "helm", "observability",
        ],
    },
    Family {
        name: "security",
        category: Tech,
        weight: 2,
        base_salary: 125_000.0,
        ladder: ENG,
        duty: "find and fix weaknesses before attackers do",
        roles: &[
            ("Security Engineer", &["appsec", "threat modeling"]),
            ("Cloud Security Engineer", &["aws", "iam"]),
            ("Penetration Tester", &["penetration testing", "burp suite"]),
            ("SOC Analyst", &["siem", "incident response"]),
        ],
        skills: &[
            "owasp", "linux", "python", "networking", "vulnerability management", "iso 27001",
            "soc 2", "cryptography", "splunk", "zero trust",
        ],
    },
    Family {
        name: "qa",
        category: Tech,
        weight: 2,
        base_salary: 85_000.0,
        ladder: ENG,
        duty: "make sure every release works as promised",
        roles: &[
            ("QA Engineer", &["manual testing", "test plans"]),
            ("Test Automation Engineer", &["selenium", "java"]),
            ("SDET", &["playwright", "typescript"]),
            ("Performance Test Engineer", &["jmeter", "k6"]),
        ],
        skills: &[
            "jira", "ci/cd", "api testing", "postman", "cypress", "sql", "regression testing",
            "bdd", "git",
        ],
    },
    Family {
        name: "embedded",
        category: Tech,
        weight: 2,
        base_salary: 105_000.0,
        ladder: ENG,
        duty: "write the firmware that runs our devices",
        roles: &[
            ("Embedded Software Engineer", &["c", "rtos"]),
            ("Firmware Engineer", &["c", "arm cortex-m"]),
            ("Embedded Linux Engineer", &["embedded linux", "yocto"]),
            ("Embedded Engineer (Rust)", &["rust", "embedded"]),
        ],
        skills: &[
            "c++", "i2c", "spi", "can bus", "oscilloscope", "python", "git", "debugging",
            "low-power design", "bluetooth le",
        ],
    },
    Family {
        name: "it-support",
        category: Tech,
        weight: 3,
        base_salary: 55_000.0,
        ladder: PROF,
        duty: "keep our people and their devices productive",
        roles: &[
            ("IT Support Specialist", &["help desk", "windows"]),
            ("Systems Administrator", &["active directory", "windows server"]),
            ("Network Engineer", &["cisco", "routing"]),
            ("IT Support Technician", &["hardware", "macos"]),
        ],
        skills: &[
            "microsoft 365", "itil", "troubleshooting", "networking", "vpn", "powershell",
            "linux", "ticketing", "intune", "customer service",
        ],
    },
    Family {
        name: "engineering-management",
        category: Tech,
        weight: 2,
        base_salary: 160_000.0,
        ladder: FLAT,
        duty: "lead and grow engineering teams that deliver",
        roles: &[
            ("Engineering Manager", &["people management", "agile"]),
            ("Engineering Manager, Platform", &["kubernetes", "sre"]),
            ("Engineering Manager, Mobile", &["ios", "android"]),
            ("Director of Engineering", &["org design", "budgeting"]),
        ],
        skills: &[
            "mentoring", "roadmapping", "stakeholder management", "system design", "scrum",
            "okrs", "communication", "recruiting",
        ],
    },
    Family {
        name: "games",
        category: Tech,
        weight: 1,
        base_salary: 90_000.0,
        ladder: ENG,
        duty: "make games that players remember",
        roles: &[
            ("Gameplay Programmer", &["c++", "unreal engine"]),
            ("Unity Developer", &["unity", "c#"]),
            ("Graphics Programmer", &["vulkan", "hlsl"]),
            ("Game Designer", &["level design", "prototyping"]),
        ],
        skills: &[
            "c++", "c#", "3d math", "physics", "multiplayer", "optimization", "git",
            "perforce", "shaders", "game ai",
        ],
    },
    Family {
        name: "product-management",
        category: Tech,
        weight: 3,
        base_salary: 130_000.0,
        ladder: PROF,
        duty: "decide what we build next and why",
        roles: &[
            ("Product Manager", &["roadmapping", "discovery"]),
            ("Technical Product Manager", &["apis", "system design"]),
            ("Product Owner", &["scrum", "backlog management"]),
            ("Growth Product Manager", &["experimentation", "a/b testing"]),
        ],
        skills: &[
            "stakeholder management", "user research", "analytics", "sql", "jira", "okrs",
            "prioritization", "go-to-market", "communication",
        ],
    },
    Family {
        name: "solutions-architecture",
        category: Tech,
        weight: 2,
        base_salary: 140_000.0,
        ladder: PROF,
        duty: "design the systems our customers run on",
        roles: &[
            ("Solutions Architect", &["aws", "pre-sales"]),
            ("Enterprise Architect", &["togaf", "integration"]),
            ("Cloud Architect", &["azure", "gcp"]),
            ("Sales Engineer", &["demos", "apis"]),
        ],
        skills: &[
            "system design", "cloud migration", "security", "networking", "kubernetes",
            "communication", "documentation", "customer workshops",
        ],
    },
    Family {
        name: "data-analysis",
        category: Data,
        weight: 4,
        base_salary: 75_000.0,
        ladder: PROF,
        duty: "turn our data into decisions",
        roles: &[
            ("Data Analyst", &["sql", "excel"]),
            ("Business Analyst", &["requirements", "process mapping"]),
            ("Marketing Analyst", &["google analytics", "attribution"]),
            ("Product Analyst", &["amplitude", "experimentation"]),
        ],
        skills: &[
            "tableau", "power bi", "python", "statistics", "dashboards", "looker",
            "data visualization", "stakeholder management", "bigquery",
        ],
    },
    Family {
        name: "data-engineering",
        category: Data,
        weight: 3,
        base_salary: 120_000.0,
        ladder: ENG,
        duty: "build the pipelines and warehouse everyone relies on",
        roles: &[
            ("Data Engineer", &["spark", "airflow"]),
            ("Analytics Engineer", &["dbt", "snowflake"]),
            ("Big Data Engineer", &["hadoop", "scala"]),
            ("Data Platform Engineer", &["kafka", "kubernetes"]),
        ],
        skills: &[
            "sql", "python", "etl", "data modeling", "aws", "bigquery", "databricks",
            "delta lake", "terraform", "data quality",
        ],
    },
    Family {
        name: "data-science",
        category: Data,
        weight: 3,
        base_salary: 125_000.0,
        ladder: ENG,
        duty: "model, measure and predict what matters to the business",
        roles: &[
            ("Data Scientist", &["python", "statistics"]),
            ("Data Scientist, Experimentation", &["a/b testing", "causal inference"]),
            ("Decision Scientist", &["forecasting", "r"]),
            ("Research Scientist", &["pytorch", "deep learning"]),
        ],
        skills: &[
            "sql", "pandas", "scikit-learn", "machine learning", "jupyter",
            "data visualization", "bayesian statistics", "time series", "feature engineering",
        ],
    },
    Family {
        name: "ml-engineering",
        category: Data,
        weight: 3,
        base_salary: 140_000.0,
        ladder: ENG,
        duty: "put machine learning models into production",
        roles: &[
            ("Machine Learning Engineer", &["pytorch", "mlops"]),
            ("MLOps Engineer", &["kubeflow", "mlflow"]),
            ("NLP Engineer", &["transformers", "llms"]),
            ("Computer Vision Engineer", &["opencv", "cnn"]),
        ],
        skills: &[
            "python", "docker", "kubernetes", "aws sagemaker", "feature stores",
            "model serving", "vector databases", "onnx", "cuda", "rag",
        ],
    },
    Family {
        name: "business-intelligence",
        category: Data,
        weight: 2,
        base_salary: 85_000.0,
        ladder: PROF,
        duty: "give every team trustworthy dashboards and reports",
        roles: &[
            ("BI Developer", &["power bi", "dax"]),
            ("BI Analyst", &["tableau", "sql"]),
            ("Reporting Analyst", &["excel", "ssrs"]),
            ("Data Warehouse Developer", &["ssis", "t-sql"]),
        ],
        skills: &[
            "sql", "data modeling", "etl", "dashboards", "kpis", "azure synapse",
            "stakeholder management", "data governance",
        ],
    },
    Family {
        name: "product-design",
        category: Design,
        weight: 3,
        base_salary: 105_000.0,
        ladder: PROF,
        duty: "design products that are simple to use",
        roles: &[
            ("Product Designer", &["figma", "interaction design"]),
            ("UX Designer", &["wireframing", "usability testing"]),
            ("UI Designer", &["visual design", "design systems"]),
            ("Interaction Designer", &["prototyping", "motion design"]),
        ],
        skills: &[
            "figma", "user research", "design systems", "accessibility", "prototyping",
            "sketch", "information architecture", "user flows", "html", "css",
        ],
    },
    Family {
        name: "graphic-design",
        category: Design,
        weight: 2,
        base_salary: 65_000.0,
        ladder: PROF,
        duty: "shape how our brand looks everywhere",
        roles: &[
            ("Graphic Designer", &["adobe illustrator", "typography"]),
            ("Brand Designer", &["branding", "adobe indesign"]),
            ("Motion Designer", &["after effects", "animation"]),
            ("Visual Designer", &["photoshop", "layout"]),
        ],
        skills: &[
            "adobe creative suite", "illustration", "print design", "social media",
            "video editing", "figma", "art direction", "colour theory",
        ],
    },
    Family {
        name: "ux-research",
        category: Design,
        weight: 1,
        base_salary: 100_000.0,
        ladder: PROF,
        duty: "find out what our users really need",
        roles: &[
            ("UX Researcher", &["usability testing", "interviews"]),
            ("Design Researcher", &["ethnography", "synthesis"]),
            ("Quantitative UX Researcher", &["surveys", "statistics"]),
        ],
        skills: &[
            "user research", "personas", "journey mapping", "dovetail", "research ops",
            "workshops", "accessibility", "a/b testing",
        ],
    },
    Family {
        name: "content",
        category: Design,
        weight: 2,
        base_salary: 62_000.0,
        ladder: PROF,
        duty: "write words that help people get things done",
        roles: &[
            ("Content Designer", &["ux writing", "content strategy"]),
            ("Copywriter", &["copywriting", "brand voice"]),
            ("Technical Writer", &["documentation", "markdown"]),
            ("Content Editor", &["editing", "cms"]),
        ],
        skills: &[
            "seo", "storytelling", "style guides", "wordpress", "research", "proofreading",
            "social media", "figma",
        ],
    },
    Family {
        name: "account-executive",
        category: Sales,
        weight: 4,
        base_salary: 90_000.0,
        ladder: PROF,
        duty: "win and grow customer accounts",
        roles: &[
            ("Account Executive", &["b2b sales", "negotiation"]),
            ("Enterprise Account Executive", &["enterprise sales", "meddic"]),
            ("Account Manager", &["account management", "upselling"]),
            ("Key Account Manager", &["key accounts", "forecasting"]),
        ],
        skills: &[
            "salesforce", "crm", "prospecting", "pipeline management", "closing", "saas",
            "cold calling", "presentation skills", "hubspot",
        ],
    },
    Family {
        name: "sales-development",
        category: Sales,
        weight: 3,
        base_salary: 55_000.0,
        ladder: FRONTLINE,
        duty: "open conversations with new customers",
        roles: &[
            ("Sales Development Representative", &["cold calling", "prospecting"]),
            ("Business Development Representative", &["outbound", "linkedin sales navigator"]),
            ("Inside Sales Representative", &["inside sales", "crm"]),
        ],
        skills: &[
            "salesforce", "hubspot", "email outreach", "lead qualification", "communication",
            "objection handling", "outreach.io",
        ],
    },
    Family {
        name: "customer-success",
        category: Sales,
        weight: 3,
        base_salary: 70_000.0,
        ladder: PROF,
        duty: "make our customers successful and keep them with us",
        roles: &[
            ("Customer Success Manager", &["onboarding", "retention"]),
            ("Implementation Manager", &["implementation", "project management"]),
            ("Technical Account Manager", &["technical support", "apis"]),
            ("Customer Success Specialist", &["customer support", "renewals"]),
        ],
        skills: &[
            "crm", "gainsight", "churn analysis", "communication", "upselling", "zendesk",
            "saas", "stakeholder management",
        ],
    },
    Family {
        name: "retail",
        category: Sales,
        weight: 4,
        base_salary: 32_000.0,
        ladder: FRONTLINE,
        duty: "give every shopper a great experience in store",
        roles: &[
            ("Retail Sales Associate", &["customer service", "pos"]),
            ("Store Manager", &["team leadership", "merchandising"]),
            ("Visual Merchandiser", &["visual merchandising", "display design"]),
            ("Cashier", &["cash handling", "pos"]),
        ],
        skills: &[
            "inventory management", "upselling", "customer service", "stock replenishment",
            "loss prevention", "scheduling", "communication",
        ],
    },
    Family {
        name: "digital-marketing",
        category: Sales,
        weight: 3,
        base_salary: 72_000.0,
        ladder: PROF,
        duty: "grow our audience and bring in qualified leads",
        roles: &[
            ("Digital Marketing Manager", &["google ads", "ppc"]),
            ("SEO Specialist", &["seo", "google search console"]),
            ("Performance Marketing Manager", &["meta ads", "attribution"]),
            ("Marketing Automation Specialist", &["marketo", "email marketing"]),
            ("Social Media Manager", &["social media", "content creation"]),
        ],
        skills: &[
            "google analytics", "hubspot", "a/b testing", "copywriting", "crm",
            "budget management", "campaign management", "marketing analytics",
        ],
    },
    Family {
        name: "nursing",
        category: Healthcare,
        weight: 5,
        base_salary: 75_000.0,
        ladder: CLINICAL,
        duty: "deliver safe, compassionate care to our patients",
        roles: &[
            ("Registered Nurse", &["patient care", "medication administration"]),
            ("ICU Nurse", &["critical care", "ventilator management"]),
            ("Pediatric Nurse", &["pediatrics", "family education"]),
            ("Charge Nurse", &["staff coordination", "triage"]),
            ("Nurse Practitioner", &["diagnosis", "prescribing"]),
        ],
        skills: &[
            "bls", "acls", "electronic health records", "wound care", "iv therapy",
            "infection control", "care planning", "patient education", "vital signs",
        ],
    },
    Family {
        name: "physicians",
        category: Healthcare,
        weight: 2,
        base_salary: 220_000.0,
        ladder: FLAT,
        duty: "diagnose and treat patients as part of a multidisciplinary team",
        roles: &[
            ("General Practitioner", &["primary care", "diagnosis"]),
            ("Consultant Cardiologist", &["cardiology", "echocardiography"]),
            ("Emergency Medicine Physician", &["emergency medicine", "trauma care"]),
            ("Psychiatrist", &["psychiatry", "psychopharmacology"]),
            ("Anaesthetist", &["anaesthesia", "airway management"]),
        ],
        skills: &[
            "patient care", "clinical governance", "electronic health records",
            "medical ethics", "teaching", "acls", "evidence-based medicine",
            "multidisciplinary teamwork",
        ],
    },
    Family {
        name: "pharmacy",
        category: Healthcare,
        weight: 2,
        base_salary: 110_000.0,
        ladder: CLINICAL,
        duty: "make sure every patient gets the right medicine",
        roles: &[
            ("Pharmacist", &["dispensing", "medication review"]),
            ("Clinical Pharmacist", &["clinical pharmacy", "antimicrobial stewardship"]),
            ("Pharmacy Technician", &["dispensing", "stock control"]),
        ],
        skills: &[
            "pharmacology", "patient counselling", "prescription verification", "compounding",
            "regulatory compliance", "electronic health records", "inventory management",
        ],
    },
    Family {
        name: "allied-health",
        category: Healthcare,
        weight: 2,
        base_salary: 70_000.0,
        ladder: CLINICAL,
        duty: "help patients recover function and independence",
        roles: &[
            ("Physiotherapist", &["physiotherapy", "rehabilitation"]),
            ("Occupational Therapist", &["occupational therapy", "adaptive equipment"]),
            ("Speech and Language Therapist", &["speech therapy", "dysphagia"]),
            ("Dietitian", &["nutrition", "meal planning"]),
        ],
        skills: &[
            "patient assessment", "treatment planning", "patient education",
            "clinical documentation", "exercise prescription", "multidisciplinary teamwork",
            "telehealth",
        ],
    },
    Family {
        name: "diagnostics",
        category: Healthcare,
        weight: 2,
        base_salary: 68_000.0,
        ladder: CLINICAL,
        duty: "produce the images and results clinicians rely on",
        roles: &[
            ("Radiographer", &["x-ray", "ct"]),
            ("MRI Technologist", &["mri", "patient positioning"]),
            ("Medical Laboratory Scientist", &["hematology", "microbiology"]),
            ("Sonographer", &["ultrasound", "obstetrics"]),
        ],
        skills: &[
            "radiation safety", "quality control", "pacs", "lims", "infection control",
            "patient care", "specimen processing",
        ],
    },
    Family {
        name: "care",
        category: Healthcare,
        weight: 3,
        base_salary: 30_000.0,
        ladder: FRONTLINE,
        duty: "support people to live safely and with dignity",
        roles: &[
            ("Care Assistant", &["personal care", "dementia care"]),
            ("Home Health Aide", &["home care", "mobility assistance"]),
            ("Healthcare Assistant", &["vital signs", "patient care"]),
            ("Support Worker", &["mental health support", "safeguarding"]),
        ],
        skills: &[
            "first aid", "manual handling", "medication support", "compassion",
            "record keeping", "communication", "infection control",
        ],
    },
    Family {
        name: "dental",
        category: Healthcare,
        weight: 1,
        base_salary: 80_000.0,
        ladder: CLINICAL,
        duty: "keep our patients' teeth healthy",
        roles: &[
            ("Dentist", &["restorative dentistry", "oral surgery"]),
            ("Dental Hygienist", &["scaling", "periodontal care"]),
            ("Dental Nurse", &["chairside assistance", "sterilisation"]),
        ],
        skills: &[
            "patient care", "radiography", "infection control", "dental software",
            "oral health education", "x-ray",
        ],
    },
    Family {
        name: "accounting",
        category: Finance,
        weight: 4,
        base_salary: 72_000.0,
        ladder: PROF,
        duty: "keep our books accurate and our close on time",
        roles: &[
            ("Accountant", &["general ledger", "month-end close"]),
            ("Staff Accountant", &["reconciliations", "journal entries"]),
            ("Tax Accountant", &["tax", "vat"]),
            ("Accounts Payable Specialist", &["accounts payable", "invoicing"]),
            ("Financial Controller", &["consolidation", "ifrs"]),
        ],
        skills: &[
            "excel", "sap", "quickbooks", "xero", "gaap", "audit support", "budgeting",
            "netsuite", "payroll",
        ],
    },
    Family {
        name: "fpa",
        category: Finance,
        weight: 3,
        base_salary: 95_000.0,
        ladder: PROF,
        duty: "plan, forecast and explain our numbers",
        roles: &[
            ("Financial Analyst", &["financial modeling", "excel"]),
            ("FP&A Analyst", &["forecasting", "budgeting"]),
            ("Finance Business Partner", &["business partnering", "variance analysis"]),
            ("Corporate Finance Analyst", &["valuation", "m&a"]),
        ],
        skills: &[
            "excel", "power bi", "sql", "anaplan", "sap", "kpis", "presentation skills",
            "accounting", "scenario planning",
        ],
    },
    Family {
        name: "risk-compliance",
        category: Finance,
        weight: 2,
        base_salary: 90_000.0,
        ladder: PROF,
        duty: "keep us compliant and our risks understood",
        roles: &[
            ("Internal Auditor", &["internal audit", "sox"]),
            ("Compliance Analyst", &["aml", "kyc"]),
            ("Risk Analyst", &["risk management", "basel iii"]),
            ("External Auditor", &["external audit", "ifrs"]),
        ],
        skills: &[
            "excel", "regulatory reporting", "data analysis", "controls testing",
            "report writing", "gdpr", "fraud detection", "policy writing",
        ],
    },
    Family {
        name: "investment",
        category: Finance,
        weight: 2,
        base_salary: 140_000.0,
        ladder: PROF,
        duty: "analyse markets and put capital to work",
        roles: &[
            ("Investment Banking Analyst", &["m&a", "pitch books"]),
            ("Portfolio Manager", &["portfolio management", "asset allocation"]),
            ("Quantitative Analyst", &["python", "derivatives pricing"]),
            ("Equity Research Analyst", &["equity research", "valuation"]),
            ("Credit Analyst", &["credit analysis", "financial statements"]),
        ],
        skills: &[
            "financial modeling", "excel", "bloomberg", "dcf", "capital markets",
            "due diligence", "vba", "risk management",
        ],
    },
    Family {
        name: "insurance",
        category: Finance,
        weight: 2,
        base_salary: 78_000.0,
        ladder: PROF,
        duty: "price and settle risk fairly",
        roles: &[
            ("Underwriter", &["underwriting", "risk assessment"]),
            ("Claims Adjuster", &["claims handling", "investigation"]),
            ("Actuary", &["actuarial modeling", "r"]),
            ("Insurance Broker", &["brokerage", "client relationships"]),
        ],
        skills: &[
            "excel", "negotiation", "regulatory compliance", "data analysis",
            "customer service", "policy administration", "sql",
        ],
    },
    Family {
        name: "supply-chain",
        category: Ops,
        weight: 3,
        base_salary: 70_000.0,
        ladder: PROF,
        duty: "get the right goods to the right place on time",
        roles: &[
            ("Supply Chain Analyst", &["demand planning", "sap"]),
            ("Logistics Coordinator", &["shipping", "freight"]),
            ("Procurement Specialist", &["procurement", "supplier management"]),
            ("Operations Manager", &["operations management", "lean"]),
        ],
        skills: &[
            "excel", "erp", "inventory management", "forecasting", "negotiation", "kpis",
            "customs", "transport management",
        ],
    },
    Family {
        name: "warehouse",
        category: Ops,
        weight: 4,
        base_salary: 36_000.0,
        ladder: FRONTLINE,
        duty: "keep orders moving safely through our sites",
        roles: &[
            ("Warehouse Associate", &["picking", "packing"]),
            ("Forklift Operator", &["forklift", "loading"]),
            ("Warehouse Supervisor", &["team leadership", "shift planning"]),
            ("Delivery Driver", &["driving licence", "route planning"]),
        ],
        skills: &[
            "health and safety", "inventory management", "rf scanners", "wms",
            "manual handling", "time management", "teamwork",
        ],
    },
    Family {
        name: "project-management",
        category: Ops,
        weight: 3,
        base_salary: 95_000.0,
        ladder: PROF,
        duty: "deliver projects on time and on budget",
        roles: &[
            ("Project Manager", &["project planning", "risk management"]),
            ("Program Manager", &["program management", "stakeholder management"]),
            ("Scrum Master", &["scrum", "agile coaching"]),
            ("PMO Analyst", &["pmo", "reporting"]),
        ],
        skills: &[
            "jira", "ms project", "budgeting", "prince2", "pmp", "communication",
            "confluence", "resource planning",
        ],
    },
    Family {
        name: "people",
        category: Ops,
        weight: 3,
        base_salary: 68_000.0,
        ladder: PROF,
        duty: "hire great people and help them thrive",
        roles: &[
            ("Recruiter", &["recruiting", "sourcing"]),
            ("Technical Recruiter", &["technical recruiting", "boolean search"]),
            ("HR Business Partner", &["employee relations", "performance management"]),
            ("People Operations Specialist", &["hris", "onboarding"]),
            ("Talent Acquisition Partner", &["talent acquisition", "employer branding"]),
        ],
        skills: &[
            "workday", "greenhouse", "interviewing", "employment law", "compensation",
            "communication", "linkedin recruiter", "payroll",
        ],
    },
    Family {
        name: "customer-support",
        category: Ops,
        weight: 4,
        base_salary: 42_000.0,
        ladder: FRONTLINE,
        duty: "solve our customers' problems quickly and kindly",
        roles: &[
            ("Customer Support Representative", &["customer service", "ticketing"]),
            ("Technical Support Engineer", &["troubleshooting", "apis"]),
            ("Call Centre Agent", &["phone support", "crm"]),
            ("Support Team Lead", &["team leadership", "escalations"]),
        ],
        skills: &[
            "zendesk", "communication", "empathy", "problem solving", "live chat",
            "knowledge base", "salesforce service cloud", "multitasking",
        ],
    },
    Family {
        name: "office",
        category: Ops,
        weight: 3,
        base_salary: 40_000.0,
        ladder: FRONTLINE,
        duty: "keep the office and the people in it running smoothly",
        roles: &[
            ("Office Manager", &["office management", "vendor management"]),
            ("Executive Assistant", &["calendar management", "travel booking"]),
            ("Administrative Assistant", &["data entry", "scheduling"]),
            ("Receptionist", &["front desk", "phone handling"]),
        ],
        skills: &[
            "microsoft office", "google workspace", "organisation", "communication",
            "bookkeeping", "event planning", "minute taking",
        ],
    },
    Family {
        name: "manufacturing",
        category: Ops,
        weight: 3,
        base_salary: 52_000.0,
        ladder: FRONTLINE,
        duty: "keep our production lines safe, efficient and up to spec",
        roles: &[
            ("Maintenance Technician", &["preventive maintenance", "plc"]),
            ("Production Supervisor", &["production planning", "lean manufacturing"]),
            ("Quality Engineer", &["iso 9001", "root cause analysis"]),
            ("CNC Machinist", &["cnc", "g-code"]),
            ("Electrician", &["electrical installation", "wiring"]),
        ],
        skills: &[
            "health and safety", "six sigma", "troubleshooting", "technical drawings",
            "autocad", "5s", "hydraulics", "welding",
        ],
    },
];

/// City name, how common it is as a job location, and its pay factor.
pub const CITIES: &[(&str, u32, f64)] = &[
    ("London", 100, 1.0),
    ("New York", 100, 1.25),
    ("San Francisco", 70, 1.35),
    ("Berlin", 70, 0.85),
    ("Bangalore", 60, 0.35),
    ("Paris", 55, 0.9),
    ("Toronto", 45, 0.9),
    ("Singapore", 45, 1.0),
    ("Amsterdam", 40, 0.95),
    ("Sydney", 40, 1.0),
    ("Seattle", 35, 1.25),
    ("Austin", 30, 1.1),
    ("Boston", 30, 1.2),
    ("Chicago", 30, 1.05),
    ("Los Angeles", 30, 1.15),
    ("Dublin", 30, 0.95),
    ("Tokyo", 30, 0.8),
    ("Munich", 20, 0.95),
    ("Stockholm", 20, 0.85),
    ("Zurich", 18, 1.45),
    ("Madrid", 20, 0.7),
    ("Barcelona", 18, 0.7),
    ("Lisbon", 18, 0.6),
    ("Warsaw", 18, 0.55),
    ("Manchester", 18, 0.8),
    ("Vancouver", 18, 0.85),
    ("São Paulo", 18, 0.35),
    ("Mexico City", 15, 0.35),
    ("Hyderabad", 18, 0.33),
    ("Mumbai", 15, 0.35),
    ("Dubai", 15, 1.0),
    ("Tel Aviv", 15, 1.0),
    ("Seoul", 15, 0.75),
    ("Shanghai", 15, 0.6),
    ("Hong Kong", 15, 0.95),
    ("Melbourne", 15, 0.95),
    ("Prague", 10, 0.55),
    ("Vienna", 10, 0.8),
    ("Copenhagen", 10, 0.95),
    ("Oslo", 8, 0.95),
    ("Helsinki", 8, 0.8),
    ("Brussels", 8, 0.85),
    ("Milan", 10, 0.7),
    ("Edinburgh", 8, 0.8),
    ("Hamburg", 10, 0.85),
    ("Montreal", 10, 0.8),
    ("Denver", 10, 1.1),
    ("Atlanta", 10, 1.0),
    ("Miami", 8, 1.0),
    ("Washington, D.C.", 10, 1.15),
    ("Buenos Aires", 8, 0.3),
    ("Bogotá", 8, 0.3),
    ("Santiago", 6, 0.4),
    ("Pune", 8, 0.3),
    ("Cape Town", 6, 0.4),
    ("Lagos", 6, 0.25),
    ("Nairobi", 6, 0.25),
    ("Kraków", 6, 0.5),
    ("Auckland", 6, 0.8),
    ("Kuala Lumpur", 6, 0.4),
    ("Manila", 6, 0.25),
    ("Istanbul", 6, 0.35),
];

/// First words of company names; the second word comes from the category.
#[rustfmt::skip]
pub const COMPANY_PREFIXES: &[&str] = &[
    "Northwind", "Bluefin", "Cedar", "Quantum", "Helix", "Aurora", "Summit", "Meridian",
    "Harbor", "Atlas", "Pioneer", "Lumen", "Vertex", "Evergreen", "Silverline", "Redwood",
    "Ironbridge", "Brightwater", "Cobalt", "Orchid", "Granite", "Polar", "Nimbus", "Zephyr",
    "Falcon", "Juniper", "Keystone", "Lighthouse", "Maple", "Oakridge", "Pinecrest",
    "Riverbend", "Sapphire", "Tidewater", "Westbrook", "Willow", "Crescent", "Beacon",
    "Horizon", "Kestrel",
];
