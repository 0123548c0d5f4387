/** The SDK's version (kept equal to package.json's by the tests). */
export const VERSION = "0.1.0";
