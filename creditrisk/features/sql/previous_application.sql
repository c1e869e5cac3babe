-- Previous-application features: one row per applicant (SK_ID_CURR) with at least one earlier
-- application at Home Credit.
--
-- Reads `previous_application`, one row per earlier application (SK_ID_PREV). Amounts are in
-- the loan currency; DAYS_DECISION is days relative to the current application (negative).
-- Status counts are 0 when the applicant has previous applications but none with that status;
-- an applicant without previous applications has no row here (all features NULL).

with

previous_applications as (

    select
        SK_ID_CURR,
        SK_ID_PREV,
        NAME_CONTRACT_STATUS,
        AMT_APPLICATION,
        AMT_CREDIT,
        AMT_DOWN_PAYMENT,
        CNT_PAYMENT,
        DAYS_DECISION
    from previous_application

),

-- ratios per application; NULL when the granted credit is 0 or NULL (e.g. refused, cancelled)
application_terms as (

    select
        *,
        AMT_APPLICATION / nullif(AMT_CREDIT, 0) as asked_to_granted,
        AMT_DOWN_PAYMENT / nullif(AMT_CREDIT, 0) as down_payment_rate
    from previous_applications

),

per_applicant as (

    select
        SK_ID_CURR,
        count(distinct SK_ID_PREV) as PREV_TOTAL,
        count(case when NAME_CONTRACT_STATUS = 'Approved' then 1 end) as PREV_APPROVED,
        count(case when NAME_CONTRACT_STATUS = 'Refused' then 1 end) as PREV_REFUSED,
        count(case when NAME_CONTRACT_STATUS = 'Canceled' then 1 end) as PREV_CANCELLED,
        count(case when NAME_CONTRACT_STATUS = 'Unused offer' then 1 end) as PREV_UNUSED,
        avg(asked_to_granted) as PREV_APP_CREDIT_RATIO_MEAN,
        avg(down_payment_rate) as PREV_DOWNPAYMENT_RATE_MEAN,
        -- number of instalments (loan term)
        avg(CNT_PAYMENT) as PREV_CNT_PAYMENT_MEAN,
        max(DAYS_DECISION) as PREV_LAST_DECISION_DAYS,
        min(DAYS_DECISION) as PREV_EARLIEST_DECISION_DAYS
    from application_terms
    group by SK_ID_CURR

),

final as (

    select
        *,
        cast(PREV_APPROVED as double) / nullif(PREV_TOTAL, 0) as PREV_APPROVAL_RATE,
        cast(PREV_REFUSED as double) / nullif(PREV_TOTAL, 0) as PREV_REFUSED_RATE
    from per_applicant

)

select * from final
