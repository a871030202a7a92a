-- Contacts for product analytics with the identifiers gone: the e-mail address survives only
-- as a salted hash (a stable key, not an address), names, phone and date of birth are dropped,
-- the birth date is coarsened to a decade. Declared an anonymization in schema.yml; Lacuna
-- checks that no sensitive column survives before it marks the view ANONYMIZED.
select
    sha256('lacuna-platform:' || email) as contact_key,
    country_code,
    (year(date_of_birth) // 10) * 10 as birth_decade,
    year(signup_date) as signup_year
from {{ ref('stg_contacts') }}
