-- Bureau monthly-balance features: bureau_balance -> bureau credit -> applicant.
--
-- Reads `bureau_balance` (one row per bureau credit and month, MONTHS_BALANCE relative to the
-- application: 0 = application month, -1 = the month before) and `bureau` (to find the
-- applicant of each credit through SK_ID_BUREAU). STATUS is the month's days-past-due bucket:
-- C (closed) and X (unknown) count as 0, digits 0-5 are the bucket number; a month is
-- delinquent when its bucket is >= 1. An unexpected or NULL status has no bucket and counts as
-- not delinquent. Months of credits absent from `bureau` cannot reach an applicant and drop out.

with

monthly_status as (

    select
        SK_ID_BUREAU,
        MONTHS_BALANCE,
        STATUS
    from bureau_balance

),

-- one row per bureau credit: the credit belongs to one applicant
bureau_credits as (

    select distinct
        SK_ID_BUREAU,
        SK_ID_CURR
    from bureau

),

monthly_buckets as (

    select
        SK_ID_BUREAU,
        MONTHS_BALANCE,
        -- most frequent codes first: this runs once per month of every bureau credit
        case STATUS
            when 'C' then 0
            when '0' then 0
            when 'X' then 0
            when '1' then 1
            when '2' then 2
            when '3' then 3
            when '4' then 4
            when '5' then 5
        end as dpd_bucket
    from monthly_status

),

-- per credit first, then per applicant (below)
credit_delinquency as (

    select
        SK_ID_BUREAU,
        -- share of months delinquent: the mean of a 0/1 indicator over all months
        avg(cast(case when dpd_bucket >= 1 then 1 else 0 end as double)) as delinquent_month_share,
        max(dpd_bucket) as worst_bucket,
        -- NULL when the credit was never delinquent
        -max(case when dpd_bucket >= 1 then MONTHS_BALANCE end) as months_since_last_delinquency
    from monthly_buckets
    group by SK_ID_BUREAU

),

final as (

    select
        bureau_credits.SK_ID_CURR,
        avg(credit_delinquency.delinquent_month_share) as BB_DELINQ_SHARE_MEAN,
        cast(max(credit_delinquency.worst_bucket) as bigint) as BB_WORST_STATUS_MAX,
        cast(
            min(credit_delinquency.months_since_last_delinquency) as bigint
        ) as BB_MONTHS_SINCE_LAST_DELINQ_MIN
    from credit_delinquency
    inner join bureau_credits
        on credit_delinquency.SK_ID_BUREAU = bureau_credits.SK_ID_BUREAU
    group by bureau_credits.SK_ID_CURR

)

select * from final
