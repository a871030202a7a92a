-- The marketing team's mailing list, straight from the CRM: raw personal data into the
-- marketing domain, which its own steward's policy refuses (aggregate or anonymize first).
select contact_id, first_name, email, country_code
from {{ ref('stg_contacts') }}
