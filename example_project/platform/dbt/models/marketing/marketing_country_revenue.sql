-- Country revenue for campaign planning: aggregated data, which marketing may use.
select country_name, region, total_amount
from {{ ref('revenue_by_country') }}
