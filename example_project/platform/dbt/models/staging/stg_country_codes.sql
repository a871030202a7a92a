select country_code, country_name, region
from {{ source('raw', 'country_codes') }}
