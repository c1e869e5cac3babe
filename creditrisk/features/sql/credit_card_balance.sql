-- Credit-card features: per card (SK_ID_PREV) first, then per applicant.
--
-- Reads `credit_card_balance`, one row per card and month of an earlier Home Credit credit
-- card. Rows join the applicant through their own SK_ID_CURR, so cards missing from
-- `previous_application` still count. Amounts in the loan currency, SK_DPD in days past due.
-- Ratios are NULL when the limit or the minimum payment is 0 or NULL; a share counts every month
-- of the card and a month whose condition is NULL (e.g. no minimum payment due) as not met.

with

card_months as (

    select
        SK_ID_CURR,
        SK_ID_PREV,
        AMT_BALANCE,
        AMT_CREDIT_LIMIT_ACTUAL,
        AMT_DRAWINGS_ATM_CURRENT,
        AMT_PAYMENT_TOTAL_CURRENT,
        AMT_INST_MIN_REGULARITY,
        SK_DPD,
        SK_DPD_DEF
    from credit_card_balance

),

monthly_ratios as (

    select
        SK_ID_CURR,
        SK_ID_PREV,
        SK_DPD,
        SK_DPD_DEF,
        AMT_BALANCE / nullif(AMT_CREDIT_LIMIT_ACTUAL, 0) as utilisation,
        -- how many times the minimum payment was paid
        AMT_PAYMENT_TOTAL_CURRENT / nullif(AMT_INST_MIN_REGULARITY, 0) as minimum_payment_coverage,
        -- cash withdrawn at ATMs relative to the limit
        AMT_DRAWINGS_ATM_CURRENT / nullif(AMT_CREDIT_LIMIT_ACTUAL, 0) as cash_ratio
    from card_months

),

per_card as (

    select
        SK_ID_CURR,
        SK_ID_PREV,
        avg(utilisation) as utilisation_mean,
        max(utilisation) as utilisation_max,
        avg(minimum_payment_coverage) as minimum_payment_coverage_mean,
        -- shares are means of a 0/1 indicator over all months of the card
        avg(
            cast(case when minimum_payment_coverage >= 1 then 1 else 0 end as double)
        ) as minimum_payment_met_share,
        avg(
            cast(case when SK_DPD > 0 or SK_DPD_DEF > 0 then 1 else 0 end as double)
        ) as past_due_share,
        max(SK_DPD) as dpd_max,
        avg(cash_ratio) as cash_ratio_mean
    from monthly_ratios
    group by SK_ID_CURR, SK_ID_PREV

),

final as (

    select
        SK_ID_CURR,
        avg(utilisation_mean) as CC_UTIL_MEAN,
        max(utilisation_max) as CC_UTIL_MAX,
        avg(minimum_payment_coverage_mean) as CC_MINPAY_COVERAGE_MEAN,
        avg(minimum_payment_met_share) as CC_MINPAY_MET_SHARE,
        avg(past_due_share) as CC_DPD_ANY_SHARE,
        max(dpd_max) as CC_DPD_MAX,
        avg(cash_ratio_mean) as CC_CASH_RATIO_MEAN
    from per_card
    group by SK_ID_CURR

)

select * from final
