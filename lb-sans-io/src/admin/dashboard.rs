//! `GET /`: the dashboard, a static HTML page ([`PAGE`], `dashboard.html` beside this file)
//! whose script polls `GET /status` every 2 s and renders the listeners and one table of
//! backends per pool, with per-backend drain / disable / enable buttons and a weight input.
//! Everything it shows comes from `/status`; rates are computed in the browser from
//! successive polls. Names from `/status` are inserted as text (`textContent`), never as
//! markup. The page loads nothing from elsewhere.

/// The page, the same bytes for every request.
pub const PAGE: &str = include_str!("dashboard.html");

/// The dashboard's body.
pub fn page() -> String {
    PAGE.to_string()
}
