select
    contact_id,
    first_name,
    last_name,
    lower(email) as email,
    phone,
    date_of_birth,
    upper(country_code) as country_code,
    signup_date
from {{ source('raw', 'crm_contacts') }}
