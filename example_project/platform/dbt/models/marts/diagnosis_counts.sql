-- Visits per diagnosis and month, for care planning (an allowed purpose for health data). A
-- diagnosis code is health data on its own, so Lacuna does not lower the aggregate's tier.
select
    diagnosis_code,
    date_trunc('month', visited_on) as visit_month,
    count(*) as visit_count
from {{ ref('stg_patient_visits') }}
group by diagnosis_code, date_trunc('month', visited_on)
